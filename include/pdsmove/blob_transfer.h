/* blob_transfer.h — the blob-copy loop of migrate and restore: list every blob of the
 * account into the journal (listBlobs, paged), then copy the pending ones with a bounded
 * number in flight: download to a temporary file, hash it against its CID, upload from the
 * file, record the outcome. Memory stays bounded whatever the blob count and sizes (each
 * blob goes socket → disk → socket through fixed buffers). */
#ifndef PDSMOVE_BLOB_TRANSFER_H
#define PDSMOVE_BLOB_TRANSFER_H

#include <stdint.h>
#include "pdsmove/cid.h"
#include "pdsmove/err.h"
#include "pdsmove/journal.h"
#include "pdsmove/pds.h"

#define BLOB_JOBS_MAX 16
#define BLOB_MAX_ATTEMPTS 4

typedef struct {
    pds_session *src;          /* where blobs come from (getBlob; authenticated) */
    pds_session *dst;          /* where they go (uploadBlob); NULL = download and verify only */
    const char *did;
    const char *tmp_dir;       /* downloads land here and are removed after upload */
    int jobs;                  /* transfers in flight, 1..BLOB_JOBS_MAX */
    uint64_t max_blob_bytes;   /* the destination's upload limit if known, else 0 */
    xrpc_options xo;           /* for the workers' clients (wait callback: called from worker threads) */
    journal *j;
    int64_t run_id;
    void (*progress)(void *ctx, const journal_blob_counts *counts, const char *last_cid);
    void *ctx;
} blob_transfer;

/* Lists every blob of did on src into the journal (pages of 1000, one transaction each). */
err_code blob_list_into_journal(blob_transfer *t, int64_t *listed, err_t *e);
/* Copies every pending blob; failures are recorded per blob (the run goes on). Returns ERR_OK
 * when the loop ran; counts tell what is left. ERR_LIMIT when a blob exceeds max_blob_bytes. */
err_code blob_transfer_run(blob_transfer *t, err_t *e);
/* Hashes fd from offset 0 and checks it against cid; *size_out = its size. */
err_code blob_verify_fd(int fd, const cid_t *cid, uint64_t *size_out, err_t *e);

#endif
