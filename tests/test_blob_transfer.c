/* test_blob_transfer.c — the blob loop against an untrusted source on loopback: a blob
 * download without end stops at its cap (the download cap, or the new PDS's upload limit),
 * and a server that accepts and never answers stops the loop after the deadline, named; and
 * what the loop's module says before a move onto a PDS with rate limits (the loops against a
 * rate-limited reference PDS run in tests/integration). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "http_testutil.h"
#include "pdsmove/blob_transfer.h"

#include "scratch_testutil.h"

static char dir[64], blobs[128], jpath[128];

static void setup(void) {
    scratch_make(dir, sizeof dir, "blobs");
    snprintf(blobs, sizeof blobs, "%s/blobs", dir);
    snprintf(jpath, sizeof jpath, "%s/j.sqlite", dir);
}
static void teardown(void) { scratch_remove(dir); }

TestSuite(blob_transfer, .init = setup, .fini = teardown);

/* A FETCH of n listed blobs from the server at port; returns the loop's result. */
static err_code fetch(int port, int n, int jobs, const xrpc_options *xo, uint64_t max_blob_bytes, err_t *e) {
    journal *j;
    journal_run run;
    cr_assert_eq(journal_open(jpath, &j, e), ERR_OK, "%s", e->msg);
    cr_assert_eq(journal_run_begin(j, "backup", "did:plc:abc", &run, e), ERR_OK, "%s", e->msg);
    for (int i = 0; i < n; i++) {
        cid_t c;
        char s[CID_STR_MAX];
        cid_compute(&c, CID_CODEC_RAW, (const uint8_t *)&i, sizeof i);
        cid_format(&c, s, sizeof s);
        cr_assert_eq(journal_blob_add(j, run.id, s, -1, e), ERR_OK, "%s", e->msg);
    }
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    pds_session *src;
    cr_assert_eq(pds_session_new(url, xo, &src, e), ERR_OK, "%s", e->msg);
    blob_transfer t = {.phase = BLOB_PHASE_FETCH, .src = src, .did = "did:plc:abc", .dir = blobs, .jobs = jobs,
                       .max_blob_bytes = max_blob_bytes, .xo = *xo, .j = j, .run_id = run.id};
    err_code rc = blob_transfer_run(&t, e);
    pds_session_free(src);
    journal_close(j);
    return rc;
}

static off_t largest_file(const char *path) {
    DIR *d = opendir(path);
    off_t most = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", path, de->d_name);
        struct stat st;
        if (de->d_name[0] != '.' && stat(p, &st) == 0 && st.st_size > most) most = st.st_size;
    }
    if (d) closedir(d);
    return most;
}

static err_code endless_fetch(uint64_t download_cap, uint64_t max_blob_bytes, err_t *e, uint64_t *sent) {
    int port;
    endless s = {.listen_fd = listen_loopback(&port),
                 .head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"};
    pthread_t th;
    pthread_create(&th, NULL, serve_endless, &s);
    xrpc_options xo = {.max_download_bytes = download_cap, .base_backoff_ms = 5};
    err_code rc = fetch(port, 1, 1, &xo, max_blob_bytes, e);
    shutdown(s.listen_fd, SHUT_RDWR); /* a retry would wait in accept: end the server */
    pthread_join(th, NULL);
    close(s.listen_fd);
    *sent = s.sent;
    return rc;
}

Test(blob_transfer, an_endless_blob_stops_at_the_download_cap_and_stops_the_loop) {
    err_t e;
    uint64_t sent;
    err_code rc = endless_fetch(1 << 20, 0, &e, &sent);
    cr_assert_eq(rc, ERR_LIMIT, "rc %d: %s", rc, e.msg);
    cr_assert(strstr(e.msg, "http://127.0.0.1:") && strstr(e.msg, "1048576 bytes"), "%s", e.msg);
    cr_assert(strstr(e.msg, "--max-repo-bytes"), "says what to do: %s", e.msg);
    cr_assert_lt(sent, (uint64_t)64 << 20, "the loop hung up early (server sent %llu)", (unsigned long long)sent);
    cr_assert_leq(largest_file(blobs), 1 << 20);
}

Test(blob_transfer, an_endless_blob_stops_at_the_new_pds_upload_limit) {
    err_t e;
    uint64_t sent;
    err_code rc = endless_fetch(0, 1 << 20, &e, &sent);
    cr_assert_eq(rc, ERR_LIMIT, "rc %d: %s", rc, e.msg);
    cr_assert(strstr(e.msg, "PDS_BLOB_UPLOAD_LIMIT"), "%s", e.msg);
    cr_assert_lt(sent, (uint64_t)64 << 20, "the loop hung up early (server sent %llu)", (unsigned long long)sent);
}

Test(blob_transfer, a_silent_source_stops_the_loop_after_the_deadline_naming_it) {
    int port;
    int lfd = listen_loopback(&port); /* never accepts: connections wait in the backlog, unanswered */
    xrpc_options xo = {.deadline_ms = 1500, .base_backoff_ms = 5};
    err_t e;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    err_code rc = fetch(port, 6, 2, &xo, 0, &e);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    close(lfd);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    cr_assert_eq(rc, ERR_NETWORK, "rc %d: %s", rc, e.msg);
    cr_assert(took >= 1.4 && took < 5.0, "took %.2f s (the low-speed rule alone waits 60 s a transfer)", took);
    cr_assert(strstr(e.msg, "http://127.0.0.1:") && strstr(e.msg, "sent nothing for 1 s"), "%s", e.msg);
}

Test(blob_transfer, the_forecast_counts_the_pauses_of_the_daily_upload_limit) {
    char s[400];
    blob_upload_forecast(1050, false, s, sizeof s);
    cr_assert_str_eq(s, "the new PDS enforces rate limits: 1,050 blobs at 1000 uploads a day from this address means the move "
                        "pauses once, for up to 24 hours, unless you give --new-pds-ratelimit-bypass-key-file");
    blob_upload_forecast(2500, false, s, sizeof s);
    cr_assert(strstr(s, "2,500 blobs") && strstr(s, "pauses twice, for up to 24 hours each"), "%s", s);
    blob_upload_forecast(1234567, true, s, sizeof s);
    cr_assert(strstr(s, "1,234,567 blobs") && strstr(s, "waits 1234 times") && !strstr(s, "unless"), "%s", s);
    blob_upload_forecast(1000, false, s, sizeof s);
    cr_assert(strstr(s, "the 1,000 blobs fit in its 1000 uploads a day"), "exactly the limit needs no pause: %s", s);
    blob_upload_forecast(-1, false, s, sizeof s);
    cr_assert(strstr(s, "if it is like the reference PDS") && strstr(s, "--new-pds-ratelimit-bypass-key-file"), "%s", s);
}
