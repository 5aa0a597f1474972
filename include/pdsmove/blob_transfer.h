/* blob_transfer.h — the blob loops of migrate, backup and restore: list every blob of the
 * account into the journal (listBlobs, paged); FETCH the listed ones into a snapshot directory
 * (download, hash against the CID, rename into place as blobs/<cid>); UPLOAD fetched ones from
 * there to the destination. A bounded number of transfers are in flight (libcurl multi);
 * memory stays bounded whatever the blob count and sizes (socket → disk → socket through
 * fixed buffers). */
#ifndef PDSMOVE_BLOB_TRANSFER_H
#define PDSMOVE_BLOB_TRANSFER_H

#include <stdatomic.h>
#include <stdint.h>
#include "pdsmove/cid.h"
#include "pdsmove/err.h"
#include "pdsmove/journal.h"
#include "pdsmove/pds.h"

#define BLOB_JOBS_MAX 16
#define BLOB_MAX_ATTEMPTS 4

typedef struct {
    journal_blob_phase phase;  /* FETCH: src → dir; UPLOAD: dir → dst */
    pds_session *src;          /* FETCH: where blobs come from (getBlob; authenticated) */
    pds_session *dst;          /* UPLOAD: where they go (uploadBlob) */
    const char *did;
    const char *dir;           /* the snapshot's blobs/ directory: one file per CID */
    int jobs;                  /* transfers in flight, 1..BLOB_JOBS_MAX */
    uint64_t max_blob_bytes;   /* the destination's upload limit if known, else 0 */
    xrpc_options xo;           /* for the workers' clients (wait callback: called from worker threads) */
    journal *j;
    int64_t run_id;
    void (*progress)(void *ctx, const journal_blob_counts *counts, const char *last_cid);
    void *ctx;
    int64_t transferred;       /* out: blobs this call fetched (FETCH) or uploaded (UPLOAD), added to */
    /* FETCH with dst set too: once *uploads_open is true (another thread sets it when the new
     * PDS has imported the repo, so an uploaded blob is tied to its records at once), blobs
     * fetched and never tried before are uploaded while the downloads go on, up to `jobs` of
     * each direction in flight. What is left over is the UPLOAD phase's. NULL: fetch only. */
    const atomic_bool *uploads_open;
    int64_t uploaded;          /* out: blobs a FETCH call uploaded that way, added to */
    long long limit_reset_s;   /* out: with ERR_RATELIMIT, when the limit resets (epoch s, 0 unknown) */
} blob_transfer;

/* Lists every blob of did on src into the journal (pages of 1000, one transaction each). */
err_code blob_list_into_journal(blob_transfer *t, int64_t *listed, err_t *e);
/* Lists the blobs of a snapshot's blob-list.txt (one CID per line) into the journal as already
 * fetched: the snapshot holds them (the upload re-hashes each). ERR_NOT_FOUND without the file. */
err_code blob_list_from_snapshot(journal *j, int64_t run_id, const char *snapshot_dir, int64_t *listed, err_t *e);
/* Runs the phase over every blob waiting for it; failures are recorded per blob (the loop goes
 * on, retrying in later rounds). ERR_OK when nothing is left to try; the journal's counts tell
 * what failed. ERR_LIMIT when a blob exceeds max_blob_bytes (checked in both phases).
 * ERR_RATELIMIT when a server's limit resets later than xo.max_wait_ms (and not
 * xo.wait_for_limits): the blobs not transferred stay pending, limit_reset_s says when. Uploads
 * carry the dst client's rate-limit bypass header, if it has one (xrpc_set_ratelimit_bypass). */
err_code blob_transfer_run(blob_transfer *t, err_t *e);
/* The reference PDS's uploadBlob limit with rate limits on: calls a day from one address
 * (@atproto/pds 0.5.35, api/com/atproto/repo/uploadBlob.js; docs/migrate.md "Rate limits"). */
#define BLOB_REF_UPLOADS_PER_DAY 1000
/* What uploading `blobs` blobs (-1: unknown) to a PDS that enforces rate limits means, for the
 * user before anything is copied: "the new PDS enforces rate limits: 1,050 blobs at 1000
 * uploads a day from this address means the move pauses once, for up to 24 hours, unless ...". */
void blob_upload_forecast(long long blobs, bool waits, char *out, size_t size);
/* ERR_USAGE: the new PDS still sent rate-limit headers on a request carrying the bypass key. */
err_code blob_bypass_refused(const char *url, err_t *e);
/* Hashes fd from offset 0 and checks it against cid; *size_out = its size. */
err_code blob_verify_fd(int fd, const cid_t *cid, uint64_t *size_out, err_t *e);

#endif
