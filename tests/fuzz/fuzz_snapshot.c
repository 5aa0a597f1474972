/* fuzz_snapshot.c — libFuzzer harness for snapshot intake (src/storage/snapshot.c): the input
 * is an archive (tar, possibly compressed) unpacked into a fresh temporary directory, then the
 * manifest and DID document are read back and the blob list is read (with the hardened intake's
 * snapshot_blob_list_each when the header has it — every CID it hands out must be canonical —
 * otherwise line by line through cid_parse, as restore and backup verification did). The directory is removed after every run (a file left
 * behind there is a finding: unpack wrote outside the snapshot's names). Files are capped at
 * 64 MiB (RLIMIT_FSIZE) so that a decompression bomb cannot fill the disk while fuzzing. */
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "pdsmove/cid.h"
#include "pdsmove/snapshot.h"

static char base[512];

static void remove_base(void) {
    char p[600];
    snprintf(p, sizeof p, "%s/in.tar", base);
    unlink(p);
    rmdir(base);
}

static void write_all(const char *path, const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

static err_code on_cid(void *ctx, const char *cid, err_t *e) {
    cid_t c;
    char back[CID_STR_MAX];
    (void)ctx;
    if (cid_parse(&c, cid, e) != ERR_OK || c.codec != CID_CODEC_RAW || !cid_format(&c, back, sizeof back) || strcmp(back, cid)) {
        fprintf(stderr, "fuzz_snapshot: snapshot_blob_list_each passed on a non-canonical blob CID '%.200s'\n", cid);
        abort();
    }
    return ERR_OK;
}
static void read_blob_list(const char *dest, err_t *e) { (void)snapshot_blob_list_each(dest, on_cid, NULL, e); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!base[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(base, sizeof base, "%s/pdsmove-fuzz-snap-XXXXXX", tmp && tmp[0] && strlen(tmp) < 400 ? tmp : "/tmp");
        if (!mkdtemp(base)) abort();
        atexit(remove_base);
        struct rlimit fsize = {(rlim_t)64 << 20, (rlim_t)64 << 20};
        signal(SIGXFSZ, SIG_IGN); /* a write past the cap fails with EFBIG instead */
        if (setrlimit(RLIMIT_FSIZE, &fsize) != 0) abort();
    }
    char archive[600], dest[600], top[256];
    snprintf(archive, sizeof archive, "%s/in.tar", base);
    snprintf(dest, sizeof dest, "%s/out", base);
    write_all(archive, data, size);
    err_t e = {0};
    if (snapshot_unpack(archive, dest, NULL, top, sizeof top, &e) == ERR_OK) {
        json_t *j = NULL;
        if (snapshot_read_json(dest, "manifest.json", &j, &e) == ERR_OK) json_decref(j);
        if (snapshot_read_json(dest, "did-doc.json", &j, &e) == ERR_OK) json_decref(j);
        read_blob_list(dest, &e);
    }
    if (snapshot_remove(dest, &e) != ERR_OK) {
        fprintf(stderr, "fuzz_snapshot: cannot remove %s: %s\n", dest, e.msg);
        abort();
    }
    if (access(dest, F_OK) == 0) {
        fprintf(stderr, "fuzz_snapshot: %s is left behind after snapshot_remove (unpack wrote a name it should not)\n", dest);
        abort();
    }
    unlink(archive);
    return 0;
}
