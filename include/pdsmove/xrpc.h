/* xrpc.h — HTTP client for XRPC (and plain JSON endpoints like the PLC directory) on libcurl.
 * One client per server: connection reuse, HTTP/2 where offered, timeouts, TLS verification
 * always on, plain http:// only for loopback hosts unless explicitly allowed, a User-Agent
 * naming pdsmove. Retries network errors and 5xx with exponential backoff and jitter; on 429
 * waits until `ratelimit-reset` (reported through the wait callback) and continues when that is
 * at most max_wait_ms away; a limit that resets later (a daily one) is ERR_RATELIMIT, unless
 * wait_for_limits. The RateLimit-* headers of every response are kept (xrpc_last_ratelimit).
 * Bodies of unknown size stream to a file descriptor; uploads stream from one.
 * A server is untrusted: every answer has a byte cap, every request a deadline across its
 * retries, and server URLs are parsed by libcurl's URL parser (no user:password@ part). */
#ifndef PDSMOVE_XRPC_H
#define PDSMOVE_XRPC_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "pdsmove/err.h"

#define XRPC_MAX_JSON_BYTES ((size_t)16 << 20) /* JSON responses larger than this are refused */
#define XRPC_MAX_PARAMS 16
#define XRPC_MAX_RETRIES_DEFAULT 6
/* The longest 429 wait taken in place: the reference PDS's short windows are 5 minutes. */
#define XRPC_MAX_WAIT_MS_DEFAULT (10L * 60 * 1000)
/* With wait_for_limits, the longest wait for a long limit (a daily one, and some slack). */
#define XRPC_LIMIT_WAIT_MAX_MS (26LL * 3600 * 1000)
#define XRPC_BYPASS_KEY_MAX 256
#define XRPC_DEADLINE_MS_DEFAULT (3L * 60 * 1000)         /* see xrpc_options.deadline_ms */
#define XRPC_STREAM_DEADLINE_MS_DEFAULT (4L * 3600 * 1000) /* see xrpc_options.stream_deadline_ms */
#define XRPC_MAX_DOWNLOAD_BYTES_DEFAULT ((uint64_t)4 << 30) /* 4 GiB; see max_download_bytes */

/* Called before every pause (retry backoff or rate-limit wait) so the CLI can tell the user. */
typedef void (*xrpc_wait_fn)(void *ctx, const char *server, const char *why, long wait_ms);

typedef struct {
    long connect_timeout_ms;  /* default 15 s */
    long low_speed_time_s;    /* abort a transfer slower than 1 byte/s for this long (default 60) */
    long json_timeout_ms;     /* one attempt of a JSON call (default 120 s) */
    /* One request with all its attempts and error backoffs (429 waits are bounded on their
     * own): a JSON call ends within it; a streamed one (to or from an fd) fails when this long
     * passes without a byte either way. Default XRPC_DEADLINE_MS_DEFAULT (3 min). */
    long deadline_ms;
    long stream_deadline_ms;  /* a streamed request ends within it (default 4 h) */
    /* A streamed download larger than this is refused, ERR_LIMIT naming the server and the
     * limit (default XRPC_MAX_DOWNLOAD_BYTES_DEFAULT). JSON answers: XRPC_MAX_JSON_BYTES. */
    uint64_t max_download_bytes;
    int max_retries;          /* default XRPC_MAX_RETRIES_DEFAULT */
    long base_backoff_ms;     /* default 500 */
    long max_wait_ms;         /* default XRPC_MAX_WAIT_MS_DEFAULT: a 429 resetting later is a long limit */
    bool wait_for_limits;     /* long limits: wait (up to XRPC_LIMIT_WAIT_MAX_MS) instead of ERR_RATELIMIT */
    /* During a long wait: called about once a second with the time left (0 at the end), so
     * the CLI can show a countdown. NULL: only on_wait, once, at the start. */
    xrpc_wait_fn on_limit_wait;
    /* Sent as x-ratelimit-bypass (xrpc_set_ratelimit_bypass) by the client made with these
     * options; borrowed, a secret. Give it only in the options of the server it belongs to. */
    const char *ratelimit_bypass_key;
    bool allow_insecure_http; /* permit http:// to non-loopback hosts */
    xrpc_wait_fn on_wait;
    void *wait_ctx;
    /* When another thread sets *cancel, a request in progress stops within a fraction of a
     * second and no retry or wait follows: ERR_CONFLICT "cancelled". NULL: never. */
    const atomic_bool *cancel;
} xrpc_options;

typedef struct xrpc_client xrpc_client;

/* One query parameter; arrays of these end at a {NULL, NULL} entry. Values are URL-encoded. */
typedef struct { const char *key; const char *value; } xrpc_param;

/* base_url: "https://host[:port][/path]" (a trailing slash is fine; no user:password@, query
 * or fragment). opts may be NULL. */
xrpc_client *xrpc_client_new(const char *base_url, const xrpc_options *opts, err_t *e);
void xrpc_client_free(xrpc_client *c);
const char *xrpc_client_base_url(const xrpc_client *c);
/* Sets the bearer token sent with every request (copied; NULL clears). */
err_code xrpc_set_bearer(xrpc_client *c, const char *token, err_t *e);
/* Basic auth "user:password" instead of a bearer (admin API). Copied; wiped on free. */
err_code xrpc_set_basic_auth(xrpc_client *c, const char *user, const char *password, err_t *e);

/* x-ratelimit-bypass: KEY on every request (the reference PDS's PDS_RATE_LIMIT_BYPASS_KEY);
 * copied, wiped on free; NULL clears. Set it only on the client of the server it belongs to. */
err_code xrpc_set_ratelimit_bypass(xrpc_client *c, const char *key, err_t *e);
/* The header line set above ("x-ratelimit-bypass: KEY"), or NULL; borrowed, a secret. */
const char *xrpc_ratelimit_bypass_header(const xrpc_client *c);

/* The rate-limit state a server sent with a response (RateLimit-Limit, -Remaining, -Reset,
 * -Policy as the reference PDS sends them on every limited route, and Retry-After on a 429). */
typedef struct {
    bool seen;               /* some RateLimit-* header came: the server enforces limits */
    long long limit;         /* RateLimit-Limit, -1 unknown */
    long long remaining;     /* RateLimit-Remaining, -1 unknown */
    long long reset_s;       /* RateLimit-Reset (epoch seconds; a small value is a delta), 0 unknown */
    long long window_s;      /* w= of RateLimit-Policy ("1000;w=86400"), 0 unknown */
    long long retry_after_s; /* Retry-After in seconds, -1 unknown */
} xrpc_ratelimit;

void xrpc_ratelimit_clear(xrpc_ratelimit *rl);
/* One raw header line as libcurl's header callback gets it ("RateLimit-Remaining: 0\r\n"):
 * true when it was one of the above (parsed into rl; a malformed value leaves it unknown). */
bool xrpc_ratelimit_header(xrpc_ratelimit *rl, const char *line, size_t len);
/* Seconds until a retry may succeed at now_s (at least 1): from the reset, else Retry-After;
 * -1 when neither is known. */
long long xrpc_ratelimit_wait_s(const xrpc_ratelimit *rl, long long now_s);
/* When a retry may succeed, as epoch seconds (0 unknown). */
long long xrpc_ratelimit_reset_at(const xrpc_ratelimit *rl, long long now_s);
/* "allows 1000 requests a day from this address and none are left; it resets at 2026-12-05
 * 04:10 local time (in 23 h 59 min)" — what the user needs to know about a limit. */
void xrpc_ratelimit_describe(const xrpc_ratelimit *rl, long long now_s, char *out, size_t size);

/* Outcome of the last request: HTTP status (0 if none), XRPC error name ("" if none), and the
 * rate-limit headers of its last attempt (seen == false when there were none). */
long xrpc_last_status(const xrpc_client *c);
const char *xrpc_last_error_name(const xrpc_client *c);
const xrpc_ratelimit *xrpc_last_ratelimit(const xrpc_client *c);

/* GET /xrpc/<nsid>?params → JSON object (caller json_decref()s *out). */
err_code xrpc_query(xrpc_client *c, const char *nsid, const xrpc_param *params, json_t **out, err_t *e);
/* POST /xrpc/<nsid> with a JSON body (body may be NULL) → JSON (*out may be NULL when the
 * caller does not want it or the response is empty). */
err_code xrpc_procedure(xrpc_client *c, const char *nsid, const json_t *body, json_t **out, err_t *e);
/* GET /xrpc/<nsid>?params streamed into fd (truncated and rewritten on retry; redirects
 * followed); *bytes_out = body size. */
err_code xrpc_query_to_fd(xrpc_client *c, const char *nsid, const xrpc_param *params, int fd,
                          uint64_t *bytes_out, err_t *e);
/* POST /xrpc/<nsid> with the body streamed from fd (size_bytes from the current offset 0). */
err_code xrpc_procedure_from_fd(xrpc_client *c, const char *nsid, const char *content_type, int fd,
                                uint64_t size_bytes, json_t **out, err_t *e);

/* Plain JSON endpoints (PLC directory): GET base_url + path → JSON; POST JSON to path. */
err_code xrpc_get_json(xrpc_client *c, const char *path, json_t **out, err_t *e);
err_code xrpc_post_json(xrpc_client *c, const char *path, const json_t *body, json_t **out, err_t *e);
/* GET base_url + path streamed into fd (any content type; redirects followed). */
err_code xrpc_get_to_fd(xrpc_client *c, const char *path, int fd, uint64_t *bytes_out, err_t *e);

/* Helpers exposed for tests and other modules. */
/* Whether url parses (libcurl's URL API) without userinfo and names this machine: localhost,
 * *.localhost, 127.0.0.0/8 or [::1]. */
bool xrpc_url_is_loopback(const char *url);
/* Backoff for attempt n (0-based): base * 2^n with +-25% jitter, capped at 30 s. */
long xrpc_backoff_ms(long base_ms, int attempt, unsigned int random_value);

#endif
