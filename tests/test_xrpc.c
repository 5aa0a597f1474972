/* test_xrpc.c — the HTTP client's policy: loopback-only plain http, backoff and rate-limit
 * arithmetic, and the retry loop against a scripted loopback socket (429 then 200, 500s,
 * a closed port, a cancel from another thread); an untrusted server's endless and silent
 * answers against the byte caps and deadlines, and userinfo URLs. Real XRPC calls are exercised against the reference PDS in tests/integration. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "http_testutil.h"
#include "pdsmove/xrpc.h"

Test(xrpc, plain_http_only_for_loopback) {
    err_t e;
    cr_assert(xrpc_url_is_loopback("http://localhost:2583"));
    cr_assert(xrpc_url_is_loopback("http://127.0.0.1/"));
    cr_assert(xrpc_url_is_loopback("http://[::1]:80"));
    cr_assert(xrpc_url_is_loopback("http://pds.localhost"));
    cr_assert_not(xrpc_url_is_loopback("http://127.0.0.1.evil.com/"));
    cr_assert_not(xrpc_url_is_loopback("http://localhost.evil.com/"));
    cr_assert_not(xrpc_url_is_loopback("http://example.com/"));
    xrpc_client *c = xrpc_client_new("http://example.com", NULL, &e);
    cr_assert_null(c);
    cr_assert(strstr(e.msg, "--allow-insecure-http"), "message: %s", e.msg);
    xrpc_options o = {.allow_insecure_http = true};
    c = xrpc_client_new("http://example.com", &o, &e);
    cr_assert_not_null(c);
    xrpc_client_free(c);
    cr_assert_null(xrpc_client_new("ftp://example.com", NULL, &e));
    c = xrpc_client_new("https://bsky.social/", NULL, &e);
    cr_assert_str_eq(xrpc_client_base_url(c), "https://bsky.social");
    xrpc_client_free(c);
}

static void header(xrpc_ratelimit *rl, const char *line) {
    xrpc_ratelimit_header(rl, line, strlen(line));
}

Test(xrpc, ratelimit_headers_are_parsed_as_the_reference_pds_sends_them) {
    xrpc_ratelimit rl;
    xrpc_ratelimit_clear(&rl);
    cr_assert_not(rl.seen);
    cr_assert_eq(rl.limit, -1);
    cr_assert_eq(rl.remaining, -1);
    cr_assert_not(xrpc_ratelimit_header(&rl, "Content-Type: application/json\r\n", 32));
    cr_assert_not(rl.seen);
    header(&rl, "RateLimit-Limit: 1000\r\n");
    header(&rl, "ratelimit-remaining:0\r\n");
    header(&rl, "RATELIMIT-RESET: 1700086400 \r\n");
    header(&rl, "RateLimit-Policy: 1000;w=86400\r\n");
    cr_assert(rl.seen);
    cr_assert_eq(rl.limit, 1000);
    cr_assert_eq(rl.remaining, 0);
    cr_assert_eq(rl.reset_s, 1700086400);
    cr_assert_eq(rl.window_s, 86400);
    cr_assert_eq(rl.retry_after_s, -1);
    header(&rl, "Retry-After: 86400\r\n");
    cr_assert_eq(rl.retry_after_s, 86400);

    /* malformed values stay unknown; the policy alone gives the limit */
    xrpc_ratelimit_clear(&rl);
    header(&rl, "RateLimit-Remaining: -5\r\n");
    header(&rl, "RateLimit-Reset: soon\r\n");
    header(&rl, "RateLimit-Policy: 3000;w=300, 1000;w=86400\r\n");
    cr_assert_eq(rl.remaining, -1);
    cr_assert_eq(rl.reset_s, 0);
    cr_assert_eq(rl.limit, 3000);
    cr_assert_eq(rl.window_s, 300);
    header(&rl, "RateLimit-Limit: 99999999999999999999\r\n");
    cr_assert_eq(rl.limit, -1, "an absurd number is not believed");

    /* Retry-After alone is not a sign that limits are enforced (503s send it too) */
    xrpc_ratelimit_clear(&rl);
    header(&rl, "Retry-After: 5\r\n");
    cr_assert_not(rl.seen);
    cr_assert_eq(rl.retry_after_s, 5);
}

Test(xrpc, ratelimit_wait_comes_from_the_reset_else_retry_after) {
    xrpc_ratelimit rl;
    xrpc_ratelimit_clear(&rl);
    cr_assert_eq(xrpc_ratelimit_wait_s(&rl, 1700000000), -1, "nothing known");
    cr_assert_eq(xrpc_ratelimit_reset_at(&rl, 1700000000), 0);
    rl.retry_after_s = 30;
    cr_assert_eq(xrpc_ratelimit_wait_s(&rl, 1700000000), 30);
    rl.reset_s = 1700086400;
    cr_assert_eq(xrpc_ratelimit_wait_s(&rl, 1700000000), 86400, "the reset wins over Retry-After");
    cr_assert_eq(xrpc_ratelimit_reset_at(&rl, 1700000000), 1700086400);
    rl.reset_s = 1699999000;
    cr_assert_eq(xrpc_ratelimit_wait_s(&rl, 1700000000), 1, "a reset in the past waits 1 s");
    rl.reset_s = 90;
    cr_assert_eq(xrpc_ratelimit_wait_s(&rl, 1700000000), 90, "a small value is a delta");
}

Test(xrpc, a_used_up_daily_limit_is_described_with_the_time_it_resets) {
    setenv("TZ", "UTC", 1);
    tzset();
    xrpc_ratelimit rl;
    xrpc_ratelimit_clear(&rl);
    header(&rl, "RateLimit-Limit: 1000\r\n");
    header(&rl, "RateLimit-Remaining: 0\r\n");
    header(&rl, "RateLimit-Reset: 1700086340\r\n");
    header(&rl, "RateLimit-Policy: 1000;w=86400\r\n");
    char d[320];
    xrpc_ratelimit_describe(&rl, 1700000000, d, sizeof d);
    cr_assert(strstr(d, "1000 requests a day from this address and none are left"), "%s", d);
    cr_assert(strstr(d, "2023-11-15 22:12 UTC"), "the local time of the reset: %s", d);
    cr_assert(strstr(d, "in 23 h 59 min"), "%s", d);
    rl.window_s = 300;
    rl.remaining = 7;
    rl.reset_s = 1700000125;
    xrpc_ratelimit_describe(&rl, 1700000000, d, sizeof d);
    cr_assert(strstr(d, "per 5 minutes") && strstr(d, "7 are left") && strstr(d, "in 2 min 05 s"), "%s", d);
}

Test(xrpc, backoff_grows_with_jitter_and_is_capped) {
    for (unsigned r = 0; r < 1000; r += 37) {
        long b0 = xrpc_backoff_ms(500, 0, r), b3 = xrpc_backoff_ms(500, 3, r), b20 = xrpc_backoff_ms(500, 20, r);
        cr_assert(b0 >= 375 && b0 <= 625, "b0=%ld", b0);
        cr_assert(b3 >= 3000 && b3 <= 5000, "b3=%ld", b3);
        cr_assert(b20 >= 22500 && b20 <= 37500, "b20=%ld", b20);
    }
}

/* ---- a scripted loopback socket: answers each connection with the next canned reply ---- */
typedef struct {
    int listen_fd;
    const char *const *replies;
    int n_replies;
    int served;
    char last_request[8192]; /* the head of the last request served */
} script;

static void *serve(void *arg) {
    script *s = arg;
    for (int i = 0; i < s->n_replies; i++) {
        int fd = accept(s->listen_fd, NULL, NULL);
        if (fd < 0) return NULL;
        char req[8192];
        ssize_t got = 0, n;
        while ((n = read(fd, req + got, sizeof req - 1 - (size_t)got)) > 0) {
            got += n;
            req[got] = 0;
            if (strstr(req, "\r\n\r\n")) break;
        }
        snprintf(s->last_request, sizeof s->last_request, "%s", got > 0 ? req : "");
        /* replies are "<status line>\r\n<headers>\r\n\r\n<body>"; add Content-Length */
        const char *rep = s->replies[i];
        const char *sep = strstr(rep, "\r\n\r\n");
        const char *body = sep ? sep + 4 : "";
        char out[4096];
        int n_out = snprintf(out, sizeof out, "%.*s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                             (int)(sep ? sep - rep : (long)strlen(rep)), rep, strlen(body), body);
        ssize_t w = write(fd, out, (size_t)n_out);
        (void)w;
        close(fd);
        s->served++;
    }
    return NULL;
}

typedef struct { int calls; long total_ms; char last_why[128]; } waits;
static void on_wait(void *ctx, const char *server, const char *why, long ms) {
    waits *w = ctx;
    w->calls++;
    w->total_ms += ms;
    snprintf(w->last_why, sizeof w->last_why, "%s", why);
}

#define OK_JSON "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"ok\":true}"

Test(xrpc, waits_for_ratelimit_reset_then_succeeds) {
    const char *replies[] = {
        "HTTP/1.1 429 Too Many Requests\r\nratelimit-reset: 1\r\nContent-Type: application/json\r\n\r\n{\"error\":\"RateLimitExceeded\",\"message\":\"x\"}",
        OK_JSON};
    int port;
    script s = {.listen_fd = listen_loopback(&port), .replies = replies, .n_replies = 2};
    pthread_t t;
    pthread_create(&t, NULL, serve, &s);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    waits w = {0};
    /* a 1 s wait under a 0.7 s deadline: rate-limit waits do not count against it */
    xrpc_options o = {.on_wait = on_wait, .wait_ctx = &w, .base_backoff_ms = 10, .deadline_ms = 700};
    err_t e;
    xrpc_client *c = xrpc_client_new(url, &o, &e);
    json_t *out = NULL;
    cr_assert_eq(xrpc_query(c, "com.example.test", NULL, &out, &e), ERR_OK, "%s", e.msg);
    cr_assert(json_is_true(json_object_get(out, "ok")));
    cr_assert_eq(w.calls, 1);
    cr_assert_eq(w.total_ms, 1000, "waited %ld ms", w.total_ms);
    cr_assert(strstr(w.last_why, "429"));
    json_decref(out);
    xrpc_client_free(c);
    pthread_join(t, NULL);
    close(s.listen_fd);
}

Test(xrpc, retries_5xx_then_reports_the_xrpc_error) {
    const char *e500 = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\r\n{\"error\":\"InternalServerError\",\"message\":\"boom!!!\"}";
    const char *replies[] = {e500, e500, e500};
    int port;
    script s = {.listen_fd = listen_loopback(&port), .replies = replies, .n_replies = 3};
    pthread_t t;
    pthread_create(&t, NULL, serve, &s);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    waits w = {0};
    xrpc_options o = {.on_wait = on_wait, .wait_ctx = &w, .base_backoff_ms = 5, .max_retries = 2};
    err_t e;
    xrpc_client *c = xrpc_client_new(url, &o, &e);
    json_t *out = NULL;
    cr_assert_eq(xrpc_query(c, "com.example.test", NULL, &out, &e), ERR_REMOTE);
    pthread_join(t, NULL); /* the server counts a reply after sending it: wait for it */
    cr_assert_eq(s.served, 3, "1 try + 2 retries");
    cr_assert_eq(w.calls, 2);
    cr_assert(strstr(e.msg, "HTTP 500 InternalServerError: boom!!!"), "message: %s", e.msg);
    cr_assert_str_eq(xrpc_last_error_name(c), "InternalServerError");
    cr_assert_eq(xrpc_last_status(c), 500);
    xrpc_client_free(c);
    close(s.listen_fd);
}

Test(xrpc, client_errors_are_not_retried) {
    const char *replies[] = {"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\r\n{\"error\":\"InvalidToken\",\"message\":\"Token is invalid\"}"};
    int port;
    script s = {.listen_fd = listen_loopback(&port), .replies = replies, .n_replies = 1};
    pthread_t t;
    pthread_create(&t, NULL, serve, &s);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    err_t e;
    xrpc_client *c = xrpc_client_new(url, NULL, &e);
    json_t *body = json_pack("{s:s}", "token", "abc");
    cr_assert_eq(xrpc_procedure(c, "com.atproto.identity.signPlcOperation", body, NULL, &e), ERR_REMOTE);
    cr_assert(strstr(e.msg, "InvalidToken"), "%s", e.msg);
    pthread_join(t, NULL);
    cr_assert_eq(s.served, 1);
    json_decref(body);
    xrpc_client_free(c);
    close(s.listen_fd);
}

Test(xrpc, connection_refused_is_a_network_error_after_retries) {
    int port;
    int fd = listen_loopback(&port);
    close(fd); /* nothing listens there now */
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    waits w = {0};
    xrpc_options o = {.on_wait = on_wait, .wait_ctx = &w, .base_backoff_ms = 2, .max_retries = 2};
    err_t e;
    xrpc_client *c = xrpc_client_new(url, &o, &e);
    cr_assert_eq(xrpc_query(c, "com.atproto.server.describeServer", NULL, NULL, &e), ERR_NETWORK);
    cr_assert_eq(w.calls, 2);
    cr_assert(strstr(e.msg, "after 3 attempts"), "%s", e.msg);
    xrpc_client_free(c);
}

Test(xrpc, download_streams_to_fd_and_restarts_cleanly_on_retry) {
    const char *replies[] = {
        "HTTP/1.1 503 Service Unavailable\r\n\r\nbusy...",
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n0123456789"};
    int port;
    script s = {.listen_fd = listen_loopback(&port), .replies = replies, .n_replies = 2};
    pthread_t t;
    pthread_create(&t, NULL, serve, &s);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    xrpc_options o = {.base_backoff_ms = 2};
    err_t e;
    xrpc_client *c = xrpc_client_new(url, &o, &e);
    char path[] = "/tmp/pdsmove-xrpc-XXXXXX";
    int fd = mkstemp(path);
    uint64_t n = 0;
    xrpc_param p[] = {{"did", "did:plc:abc"}, {"cid", "b a&c"}, {NULL, NULL}};
    cr_assert_eq(xrpc_query_to_fd(c, "com.atproto.sync.getBlob", p, fd, &n, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(n, 10);
    char back[32] = {0};
    cr_assert_eq(pread(fd, back, sizeof back, 0), 10, "the 503 body must not remain in the file");
    cr_assert_str_eq(back, "0123456789");
    close(fd);
    unlink(path);
    xrpc_client_free(c);
    pthread_join(t, NULL);
    close(s.listen_fd);
}

/* ---- cancel: another thread stops a stalled download and a long rate-limit wait ---- */
typedef struct {
    int listen_fd;
    const char *reply; /* sent as is; then the connection stays open, silent, until `done` */
    atomic_bool done;
    atomic_bool replied; /* the reply was written */
} staller;

static void *stall(void *arg) {
    staller *s = arg;
    int fd = accept(s->listen_fd, NULL, NULL);
    if (fd < 0) return NULL;
    char req[8192];
    ssize_t n = read(fd, req, sizeof req);
    (void)n;
    ssize_t w = write(fd, s->reply, strlen(s->reply));
    (void)w;
    atomic_store(&s->replied, true);
    for (int i = 0; i < 300 && !atomic_load(&s->done); i++) usleep(20000);
    close(fd);
    return NULL;
}

typedef struct {
    xrpc_client *c;
    int fd;
    err_code rc;
    err_t e;
} download;

static void *run_download(void *arg) {
    download *d = arg;
    d->rc = xrpc_query_to_fd(d->c, "com.atproto.sync.getRepo", NULL, d->fd, NULL, &d->e);
    return NULL;
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* on_wait, and a count the test thread may read while the client runs */
typedef struct {
    waits w;
    atomic_int started;
} cancel_waits;
static void on_cancel_wait(void *ctx, const char *server, const char *why, long ms) {
    cancel_waits *cw = ctx;
    on_wait(&cw->w, server, why, ms);
    atomic_fetch_add(&cw->started, 1);
}

/* Cancels once the client is where the case wants it (the server has replied and, for a wait,
 * the wait has begun), not after a fixed sleep that a slow run (valgrind) may not cover. */
static void cancel_case(const char *reply, int want_waits) {
    int port;
    staller s = {.listen_fd = listen_loopback(&port), .reply = reply};
    pthread_t server, client;
    pthread_create(&server, NULL, stall, &s);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    atomic_bool cancel = false;
    cancel_waits cw = {0};
    waits *wp = &cw.w;
    xrpc_options o = {.cancel = &cancel, .max_wait_ms = 60000, .on_wait = on_cancel_wait, .wait_ctx = &cw};
    err_t e;
    char path[] = "/tmp/pdsmove-test-xrpc-XXXXXX";
    download d = {.c = xrpc_client_new(url, &o, &e), .fd = mkstemp(path)};
    cr_assert_not_null(d.c);
    cr_assert_geq(d.fd, 0);
    unlink(path);
    pthread_create(&client, NULL, run_download, &d);
    for (int i = 0; i < 3000 && !(atomic_load(&s.replied) && atomic_load(&cw.started) >= want_waits); i++) usleep(10000);
    cr_assert(atomic_load(&s.replied), "the server never got the request");
    cr_assert_geq(atomic_load(&cw.started), want_waits, "the client never began its wait");
    usleep(50000); /* the reply reaches the client; a cancel any time after this must stop it */
    double t0 = mono_s();
    atomic_store(&cancel, true);
    pthread_join(client, NULL);
    double took = mono_s() - t0;
    atomic_store(&s.done, true);
    pthread_join(server, NULL);
    cr_assert_eq(d.rc, ERR_CONFLICT, "rc %d: %s", d.rc, d.e.msg);
    cr_assert(strstr(d.e.msg, "cancelled"), "%s", d.e.msg);
    cr_assert_lt(took, 2.0, "the cancel took %.2f s", took);
    cr_assert_eq(wp->calls, want_waits, "%s", wp->last_why);
    close(d.fd);
    xrpc_client_free(d.c);
    close(s.listen_fd);
}

Test(xrpc, cancel_stops_a_stalled_download) {
    cancel_case("HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ipld.car\r\nContent-Length: 1000000\r\n\r\nsome bytes", 0);
}

Test(xrpc, cancel_stops_a_rate_limit_wait) {
    cancel_case("HTTP/1.1 429 Too Many Requests\r\nratelimit-reset: 30\r\nContent-Type: application/json\r\n"
                "Content-Length: 43\r\nConnection: close\r\n\r\n{\"error\":\"RateLimitExceeded\",\"message\":\"x\"}", 1);
}

/* ---- long rate limits, the bypass key, the headers of every response ---- */

static void start_script(script *s, const char *const *replies, int n, pthread_t *t, char *url, size_t url_size) {
    int port;
    *s = (script){.listen_fd = listen_loopback(&port), .replies = replies, .n_replies = n};
    pthread_create(t, NULL, serve, s);
    snprintf(url, url_size, "http://127.0.0.1:%d", port);
}

static void end_script(script *s, pthread_t t) {
    pthread_join(t, NULL);
    close(s->listen_fd);
}

Test(xrpc, a_limit_that_resets_in_hours_stops_at_once_with_ERR_RATELIMIT) {
    char reply[512];
    snprintf(reply, sizeof reply,
             "HTTP/1.1 429 Too Many Requests\r\nRateLimit-Limit: 1000\r\nRateLimit-Remaining: 0\r\nRateLimit-Reset: %lld\r\n"
             "RateLimit-Policy: 1000;w=86400\r\nRetry-After: 86000\r\nContent-Type: application/json\r\n\r\n"
             "{\"error\":\"RateLimitExceeded\",\"message\":\"Rate Limit Exceeded\"}",
             (long long)time(NULL) + 86000);
    const char *replies[] = {reply};
    script s;
    pthread_t t;
    char url[64];
    start_script(&s, replies, 1, &t, url, sizeof url);
    waits w = {0};
    xrpc_options o = {.on_wait = on_wait, .wait_ctx = &w};
    err_t e;
    xrpc_client *c = xrpc_client_new(url, &o, &e);
    json_t *out = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(xrpc_procedure(c, "com.atproto.repo.uploadBlob", NULL, &out, &e), ERR_RATELIMIT, "%s", e.msg);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cr_assert_lt(t1.tv_sec - t0.tv_sec, 5, "no wait");
    cr_assert_eq(w.calls, 0, "no wait announced");
    cr_assert(strstr(e.msg, "com.atproto.repo.uploadBlob") && strstr(e.msg, url) && strstr(e.msg, "1000 requests a day") &&
                  strstr(e.msg, "none are left") && strstr(e.msg, "resets at"),
              "the message names the call, the server, the limit and when: %s", e.msg);
    const xrpc_ratelimit *rl = xrpc_last_ratelimit(c);
    cr_assert(rl->seen);
    cr_assert_eq(rl->limit, 1000);
    cr_assert_eq(rl->remaining, 0);
    cr_assert_eq(rl->window_s, 86400);
    cr_assert_eq(xrpc_last_status(c), 429);
    xrpc_client_free(c);
    end_script(&s, t);
}

static void on_tick(void *ctx, const char *server, const char *why, long left_ms) {
    (void)server, (void)why;
    waits *w = ctx;
    w->calls++;
    w->total_ms = left_ms; /* the last value seen */
}

Test(xrpc, wait_for_limits_waits_a_long_limit_out_with_a_countdown) {
    const char *replies[] = {
        "HTTP/1.1 429 Too Many Requests\r\nRateLimit-Limit: 1000\r\nRateLimit-Remaining: 0\r\nRateLimit-Reset: 2\r\n"
        "RateLimit-Policy: 1000;w=86400\r\nContent-Type: application/json\r\n\r\n{\"error\":\"RateLimitExceeded\"}",
        OK_JSON};
    script s;
    pthread_t t;
    char url[64];
    start_script(&s, replies, 2, &t, url, sizeof url);
    waits ticks = {0};
    /* "long" here means more than 1 s, so that the test stays quick */
    xrpc_options o = {.max_wait_ms = 1000, .wait_for_limits = true, .on_limit_wait = on_tick, .wait_ctx = &ticks};
    err_t e;
    xrpc_client *c = xrpc_client_new(url, &o, &e);
    json_t *out = NULL;
    cr_assert_eq(xrpc_query(c, "com.example.test", NULL, &out, &e), ERR_OK, "%s", e.msg);
    cr_assert_geq(ticks.calls, 3, "about one tick a second and a last one: %d", ticks.calls);
    cr_assert_eq(ticks.total_ms, 0, "the last tick says the wait is over");
    json_decref(out);
    xrpc_client_free(c);
    end_script(&s, t);

    /* the same without wait_for_limits: ERR_RATELIMIT */
    start_script(&s, replies, 1, &t, url, sizeof url);
    o.wait_for_limits = false;
    c = xrpc_client_new(url, &o, &e);
    cr_assert_eq(xrpc_query(c, "com.example.test", NULL, &out, &e), ERR_RATELIMIT, "%s", e.msg);
    xrpc_client_free(c);
    end_script(&s, t);
}

Test(xrpc, the_bypass_key_goes_only_to_the_client_it_was_given_to) {
    const char *replies[] = {OK_JSON};
    script s;
    pthread_t t;
    char url[64];
    start_script(&s, replies, 1, &t, url, sizeof url);
    xrpc_options o = {.ratelimit_bypass_key = "0123456789abcdef"};
    err_t e;
    xrpc_client *c = xrpc_client_new(url, &o, &e);
    cr_assert_not_null(c, "%s", e.msg);
    cr_assert_str_eq(xrpc_ratelimit_bypass_header(c), "x-ratelimit-bypass: 0123456789abcdef");
    json_t *out = NULL;
    cr_assert_eq(xrpc_query(c, "com.example.test", NULL, &out, &e), ERR_OK, "%s", e.msg);
    json_decref(out);
    xrpc_client_free(c);
    end_script(&s, t);
    cr_assert(strstr(s.last_request, "x-ratelimit-bypass: 0123456789abcdef\r\n"), "request:\n%s", s.last_request);

    start_script(&s, replies, 1, &t, url, sizeof url);
    c = xrpc_client_new(url, NULL, &e);
    cr_assert_null(xrpc_ratelimit_bypass_header(c));
    cr_assert_eq(xrpc_query(c, "com.example.test", NULL, &out, &e), ERR_OK, "%s", e.msg);
    json_decref(out);
    xrpc_client_free(c);
    end_script(&s, t);
    cr_assert_null(strstr(s.last_request, "x-ratelimit-bypass"), "request:\n%s", s.last_request);

    /* a key that would break the header is refused */
    o.ratelimit_bypass_key = "key\r\nX-Evil: 1";
    cr_assert_null(xrpc_client_new(url, &o, &e));
    cr_assert_eq(e.code, ERR_USAGE);
}

Test(xrpc, the_rate_limit_headers_of_a_successful_call_are_kept) {
    const char *replies[] = {"HTTP/1.1 200 OK\r\nRateLimit-Limit: 3000\r\nRateLimit-Remaining: 2999\r\nRateLimit-Reset: 1700000300\r\n"
                             "RateLimit-Policy: 3000;w=300\r\nContent-Type: application/json\r\n\r\n{\"ok\":true}",
                             OK_JSON};
    script s;
    pthread_t t;
    char url[64];
    start_script(&s, replies, 2, &t, url, sizeof url);
    err_t e;
    xrpc_client *c = xrpc_client_new(url, NULL, &e);
    json_t *out = NULL;
    cr_assert_eq(xrpc_query(c, "com.atproto.server.describeServer", NULL, &out, &e), ERR_OK, "%s", e.msg);
    json_decref(out);
    const xrpc_ratelimit *rl = xrpc_last_ratelimit(c);
    cr_assert(rl->seen, "the server enforces limits");
    cr_assert_eq(rl->remaining, 2999);
    cr_assert_eq(rl->window_s, 300);
    cr_assert_eq(xrpc_query(c, "com.atproto.server.describeServer", NULL, &out, &e), ERR_OK, "%s", e.msg);
    json_decref(out);
    cr_assert_not(xrpc_last_ratelimit(c)->seen, "a response without the headers clears them");
    xrpc_client_free(c);
    end_script(&s, t);
}

/* ---- an untrusted server: URLs parsed by libcurl, byte caps, deadlines ---- */
Test(xrpc, userinfo_urls_are_refused_and_the_loopback_rule_reads_the_parsed_host) {
    /* libcurl reads 127.0.0.1:1 as user:password and example.invalid as the host */
    cr_assert_not(xrpc_url_is_loopback("http://127.0.0.1:1@example.invalid:18081"));
    cr_assert_not(xrpc_url_is_loopback("http://localhost@example.invalid/"));
    cr_assert_not(xrpc_url_is_loopback("http://user@127.0.0.1/"), "userinfo is refused even on loopback");
    cr_assert_not(xrpc_url_is_loopback("http://127.0.0.1.example.invalid/"));
    cr_assert_not(xrpc_url_is_loopback("not a url"));
    cr_assert(xrpc_url_is_loopback("HTTP://LOCALHOST:2583/"));
    cr_assert(xrpc_url_is_loopback("http://127.9.8.7:1/"));
    err_t e;
    cr_assert_null(xrpc_client_new("http://127.0.0.1:1@example.invalid:18081", NULL, &e));
    cr_assert(strstr(e.msg, "user name or password"), "%s", e.msg);
    cr_assert(strstr(e.msg, "example.invalid"), "%s", e.msg);
    cr_assert_null(strstr(e.msg, "127.0.0.1:1"), "the password part is not echoed: %s", e.msg);
    xrpc_options o = {.allow_insecure_http = true};
    cr_assert_null(xrpc_client_new("https://alice:secret@pds.example.com", &o, &e));
    cr_assert_null(strstr(e.msg, "secret"), "%s", e.msg);
    cr_assert_null(xrpc_client_new("https://pds.example.com/?x=1", NULL, &e));
    cr_assert(strstr(e.msg, "query"), "%s", e.msg);
    xrpc_client *c = xrpc_client_new("http://127.0.0.1:1", NULL, &e);
    cr_assert_not_null(c, "%s", e.msg);
    xrpc_client_free(c);
}

static off_t capped_download(const char *head, uint64_t cap, err_code *rc, err_t *e, uint64_t *sent) {
    int port;
    endless s = {.listen_fd = listen_loopback(&port), .head = head};
    pthread_t t;
    pthread_create(&t, NULL, serve_endless, &s);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    xrpc_options o = {.max_download_bytes = cap, .base_backoff_ms = 2};
    xrpc_client *c = xrpc_client_new(url, &o, e);
    char path[] = "/tmp/pdsmove-test-xrpc-XXXXXX";
    int fd = mkstemp(path);
    unlink(path);
    *rc = xrpc_query_to_fd(c, "com.atproto.sync.getRepo", NULL, fd, NULL, e);
    xrpc_client_free(c); /* hangs up: the server stops */
    pthread_join(t, NULL);
    close(s.listen_fd);
    struct stat st;
    fstat(fd, &st);
    close(fd);
    *sent = s.sent;
    return st.st_size;
}

Test(xrpc, an_endless_download_stops_at_its_cap_naming_the_server_and_the_limit) {
    err_code rc;
    err_t e;
    uint64_t sent;
    off_t got = capped_download("HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ipld.car\r\nConnection: close\r\n\r\n",
                                1 << 20, &rc, &e, &sent);
    cr_assert_eq(rc, ERR_LIMIT, "rc %d: %s", rc, e.msg);
    cr_assert_leq(got, 1 << 20, "wrote %lld bytes", (long long)got);
    cr_assert(strstr(e.msg, "http://127.0.0.1:"), "names the server: %s", e.msg);
    cr_assert(strstr(e.msg, "1048576 bytes"), "names the limit: %s", e.msg);
    cr_assert_lt(sent, (uint64_t)64 << 20, "the client hung up early (server sent %llu)", (unsigned long long)sent);
}

Test(xrpc, a_declared_size_over_the_cap_is_refused_before_the_body) {
    err_code rc;
    err_t e;
    uint64_t sent;
    off_t got = capped_download("HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ipld.car\r\nContent-Length: 999999999999\r\n\r\n",
                                1 << 20, &rc, &e, &sent);
    cr_assert_eq(rc, ERR_LIMIT, "rc %d: %s", rc, e.msg);
    cr_assert_eq(got, 0);
    cr_assert(strstr(e.msg, "1048576 bytes"), "%s", e.msg);
}

Test(xrpc, an_endless_json_answer_stops_at_the_json_cap) {
    int port;
    endless s = {.listen_fd = listen_loopback(&port),
                 .head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n[\"x\", "};
    pthread_t t;
    pthread_create(&t, NULL, serve_endless, &s);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    err_t e;
    xrpc_client *c = xrpc_client_new(url, NULL, &e);
    json_t *out = NULL;
    cr_assert_eq(xrpc_query(c, "com.atproto.server.describeServer", NULL, &out, &e), ERR_LIMIT, "%s", e.msg);
    cr_assert(strstr(e.msg, url) && strstr(e.msg, "16777216 bytes"), "%s", e.msg);
    xrpc_client_free(c);
    pthread_join(t, NULL);
    close(s.listen_fd);
    cr_assert_lt(s.sent, (uint64_t)64 << 20);
}

/* A server that accepts (the kernel does, from the listen backlog) and never answers. */
static double silent_case(bool stream, long deadline_ms, err_code *rc, err_t *e, waits *w) {
    int port;
    int lfd = listen_loopback(&port);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    xrpc_options o = {.deadline_ms = deadline_ms, .base_backoff_ms = 10, .on_wait = on_wait, .wait_ctx = w};
    xrpc_client *c = xrpc_client_new(url, &o, e);
    double t0 = mono_s();
    if (stream) {
        char path[] = "/tmp/pdsmove-test-xrpc-XXXXXX";
        int fd = mkstemp(path);
        unlink(path);
        *rc = xrpc_query_to_fd(c, "com.atproto.sync.getRepo", NULL, fd, NULL, e);
        close(fd);
    } else {
        *rc = xrpc_query(c, "com.atproto.server.describeServer", NULL, NULL, e);
    }
    double took = mono_s() - t0;
    xrpc_client_free(c);
    close(lfd);
    return took;
}

Test(xrpc, a_silent_server_ends_a_call_at_its_deadline_naming_the_server) {
    /* without the deadline: 120 s a try for JSON, 60 s a try for streams (the low-speed rule) */
    const struct { bool stream; const char *want; } cases[] = {{false, "did not answer within 1 s"},
                                                               {true, "sent nothing for 1 s"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err_code rc;
        err_t e;
        waits w = {0};
        double took = silent_case(cases[i].stream, 1500, &rc, &e, &w);
        cr_assert_eq(rc, ERR_NETWORK, "case %zu, rc %d: %s", i, rc, e.msg);
        cr_assert(took >= 1.4 && took < 4.0, "case %zu took %.2f s", i, took);
        cr_assert(strstr(e.msg, "http://127.0.0.1:") && strstr(e.msg, cases[i].want), "%s", e.msg);
        cr_assert(strstr(e.msg, "try again later"), "%s", e.msg);
    }
}
