/* xrpc.c — the HTTP client every network call goes through (see xrpc.h for the policy).
 * It never prints: waits are reported through the caller's callback, failures as err_t.
 * Invariant: a retried request starts from a clean slate (sink truncated, source rewound). */
#include "pdsmove/xrpc.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "pdsmove/buf.h"

#ifndef PDSMOVE_VERSION
#define PDSMOVE_VERSION "dev"
#endif

#define URL_MAX 4096

struct xrpc_client {
    CURL *h;
    char *base;          /* no trailing slash */
    char *bearer;        /* owned, wiped on free */
    char *userpwd;       /* owned, wiped on free */
    char *bypass;        /* "x-ratelimit-bypass: KEY", owned, wiped on free */
    xrpc_options opt;
    long last_status;
    char last_error[128];
    xrpc_ratelimit last_rl;
};

typedef struct {
    const char *method;       /* "GET" or "POST" */
    const char *url;
    const char *content_type; /* for POST */
    const char *body;         /* in-memory body (JSON) or NULL */
    size_t body_len;
    int src_fd;               /* streamed body, or -1 */
    uint64_t src_size;
    buf_t *sink_buf;          /* response into memory, or */
    int sink_fd;              /* response into fd (-1 if none) */
    uint64_t sink_bytes;
    bool follow_redirects;
    long timeout_ms;          /* one attempt; 0 = a stream (bounded by the stream deadline) */
    uint64_t max_bytes;       /* the answer's cap (its body, whatever the status) */
    const char *server;       /* c->base, for messages */
    const atomic_bool *cancel;
    /* deadlines (monotonic ms): excused_ms moves them on by the 429 waits */
    long long started_ms, excused_ms, last_byte_ms;
    long idle_limit_ms;       /* streams: no byte either way for this long ends the request */
    bool idle_hit;            /* an attempt was stopped for that */
    xrpc_ratelimit rl;        /* headers seen on the last attempt */
    err_t write_err;          /* set when the sink failed (disk full) */
} request;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_global(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static void wipe_free(char *s) {
    if (!s) return;
    explicit_bzero(s, strlen(s));
    free(s);
}

/* The parts of a server URL we judge, from libcurl's own parser (the one that will use it). */
typedef struct {
    char scheme[16];
    char host[256];           /* lowercase; an IPv6 address in brackets */
    bool has_userinfo, has_query, has_fragment;
} url_parts;

static bool url_parse(const char *url, url_parts *out) {
    memset(out, 0, sizeof *out);
    CURLU *u = curl_url();
    if (!u) return false;
    char *scheme = NULL, *host = NULL, *part = NULL;
    bool ok = curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && strlen(scheme) < sizeof out->scheme &&
              strlen(host) < sizeof out->host;
    if (ok) {
        for (size_t i = 0; scheme[i]; i++) out->scheme[i] = (char)tolower((unsigned char)scheme[i]);
        for (size_t i = 0; host[i]; i++) out->host[i] = (char)tolower((unsigned char)host[i]);
        const CURLUPart who[] = {CURLUPART_USER, CURLUPART_PASSWORD, CURLUPART_OPTIONS};
        for (size_t i = 0; i < sizeof who / sizeof who[0]; i++) {
            if (curl_url_get(u, who[i], &part, 0) == CURLUE_OK) out->has_userinfo = true;
            curl_free(part);
            part = NULL;
        }
        out->has_query = curl_url_get(u, CURLUPART_QUERY, &part, 0) == CURLUE_OK;
        curl_free(part);
        part = NULL;
        out->has_fragment = curl_url_get(u, CURLUPART_FRAGMENT, &part, 0) == CURLUE_OK;
        curl_free(part);
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ok && out->host[0];
}

static bool host_is_loopback(const char *host) {
    if (!strcmp(host, "localhost") || !strcmp(host, "[::1]")) return true;
    size_t hl = strlen(host);
    if (hl > 10 && !strcmp(host + hl - 10, ".localhost")) return true;
    struct in_addr a;
    return inet_pton(AF_INET, host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

bool xrpc_url_is_loopback(const char *url) {
    url_parts u;
    return url && url_parse(url, &u) && !u.has_userinfo && host_is_loopback(u.host);
}

void xrpc_ratelimit_clear(xrpc_ratelimit *rl) {
    *rl = (xrpc_ratelimit){.limit = -1, .remaining = -1, .retry_after_s = -1};
}

/* A decimal number of at most 15 digits (no sign), or -1. */
static long long parse_count(const char *v, size_t len) {
    if (len == 0 || len > 15) return -1;
    long long n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9') return -1;
        n = n * 10 + (v[i] - '0');
    }
    return n;
}

bool xrpc_ratelimit_header(xrpc_ratelimit *rl, const char *line, size_t len) {
    static const char *const names[] = {"ratelimit-limit:", "ratelimit-remaining:", "ratelimit-reset:",
                                        "ratelimit-policy:", "retry-after:"};
    size_t which = sizeof names / sizeof names[0];
    for (size_t i = 0; i < sizeof names / sizeof names[0] && which == sizeof names / sizeof names[0]; i++)
        if (len > strlen(names[i]) && !strncasecmp(line, names[i], strlen(names[i]))) which = i;
    if (which == sizeof names / sizeof names[0]) return false;
    const char *v = line + strlen(names[which]);
    size_t vl = len - strlen(names[which]);
    while (vl && (*v == ' ' || *v == '\t')) { v++; vl--; }
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
    long long n = -1;
    switch (which) {
    case 0: rl->limit = parse_count(v, vl); break;
    case 1: rl->remaining = parse_count(v, vl); break;
    case 2: n = parse_count(v, vl); rl->reset_s = n > 0 ? n : 0; break;
    case 3: { /* "1000;w=86400" (several policies may be listed: the first is the one that applies) */
        size_t q = 0;
        while (q < vl && v[q] != ';' && v[q] != ',') q++;
        if (rl->limit < 0) rl->limit = parse_count(v, q);
        if (q + 3 <= vl && v[q] == ';' && !strncmp(v + q + 1, "w=", 2)) {
            size_t w = q + 3, we = w;
            while (we < vl && v[we] >= '0' && v[we] <= '9') we++;
            n = parse_count(v + w, we - w);
            rl->window_s = n > 0 ? n : 0;
        }
        break;
    }
    case 4: rl->retry_after_s = parse_count(v, vl); return true; /* also sent without limits (503) */
    }
    rl->seen = true;
    return true;
}

long long xrpc_ratelimit_reset_at(const xrpc_ratelimit *rl, long long now_s) {
    if (rl->reset_s > 0) return rl->reset_s < 1000000000LL ? now_s + rl->reset_s : rl->reset_s;
    if (rl->retry_after_s >= 0) return now_s + rl->retry_after_s;
    return 0;
}

long long xrpc_ratelimit_wait_s(const xrpc_ratelimit *rl, long long now_s) {
    long long at = xrpc_ratelimit_reset_at(rl, now_s);
    if (!at) return -1;
    return at - now_s < 1 ? 1 : at - now_s;
}

void xrpc_ratelimit_describe(const xrpc_ratelimit *rl, long long now_s, char *out, size_t size) {
    char per[48] = "", left[64] = "", when[64] = "", in[48] = "";
    long long w = rl->window_s;
    if (w == 86400) snprintf(per, sizeof per, " a day");
    else if (w == 3600) snprintf(per, sizeof per, " an hour");
    else if (w > 0 && w % 3600 == 0) snprintf(per, sizeof per, " per %lld hours", w / 3600);
    else if (w > 0 && w % 60 == 0) snprintf(per, sizeof per, " per %lld minutes", w / 60);
    else if (w > 0) snprintf(per, sizeof per, " per %lld s", w);
    if (rl->remaining == 0) snprintf(left, sizeof left, " and none are left");
    else if (rl->remaining > 0) snprintf(left, sizeof left, " and %lld are left", rl->remaining);
    long long at = xrpc_ratelimit_reset_at(rl, now_s);
    if (at) {
        time_t t = (time_t)at;
        struct tm tm;
        if (localtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M %Z", &tm);
        long long d = at - now_s < 0 ? 0 : at - now_s;
        if (d >= 3600) snprintf(in, sizeof in, "in %lld h %02lld min", d / 3600, d / 60 % 60);
        else snprintf(in, sizeof in, "in %lld min %02lld s", d / 60, d % 60);
    }
    char limit[40] = "";
    if (rl->limit >= 0) snprintf(limit, sizeof limit, "%lld requests", rl->limit);
    snprintf(out, size, "allows %s%s from this address%s; it resets at %s (local time, %s)", limit[0] ? limit : "a limited number of requests",
             per, left, when[0] ? when : "an unknown time", in[0] ? in : "unknown");
}

long xrpc_backoff_ms(long base_ms, int attempt, unsigned int random_value) {
    if (attempt > 16) attempt = 16;
    long long ms = (long long)base_ms << attempt;
    if (ms > 30000) ms = 30000;
    /* jitter in [-25%, +25%) */
    long long span = ms / 2;
    long long jitter = span ? (long long)(random_value % (unsigned long long)span) - span / 2 : 0;
    ms += jitter;
    return ms < 1 ? 1 : (long)ms;
}

xrpc_client *xrpc_client_new(const char *base_url, const xrpc_options *opts, err_t *e) {
    pthread_once(&curl_once, curl_global);
    if (base_url && strlen(base_url) > URL_MAX / 2) {
        err_set(e, ERR_LIMIT, "server URL is too long");
        return NULL;
    }
    url_parts u;
    if (!base_url || !url_parse(base_url, &u) || (strcmp(u.scheme, "https") && strcmp(u.scheme, "http"))) {
        err_set(e, ERR_USAGE, "server URL '%s' must start with https:// (or http:// for a local server)",
                !base_url ? "(none)" : strchr(base_url, '@') ? "(not shown: it has an @)" : base_url);
        return NULL;
    }
    /* The URL is not echoed: its user:password part may be a secret. */
    if (u.has_userinfo) {
        err_set(e, ERR_USAGE, "the server URL for %s has a user name or password in it (user@host): give the "
                "plain %s://%s URL", u.host, u.scheme, u.host);
        return NULL;
    }
    if (u.has_query || u.has_fragment) {
        err_set(e, ERR_USAGE, "server URL '%s' has a query or fragment (?… or #…): give just %s://%s", base_url,
                u.scheme, u.host);
        return NULL;
    }
    xrpc_options o = opts ? *opts : (xrpc_options){0};
    if (!strcmp(u.scheme, "http") && !o.allow_insecure_http && !host_is_loopback(u.host)) {
        err_set(e, ERR_USAGE,
                "refusing plain http:// for %s: only loopback hosts may use http (use https://, or "
                "--allow-insecure-http if you really mean it)", base_url);
        return NULL;
    }
    if (!o.connect_timeout_ms) o.connect_timeout_ms = 15000;
    if (!o.low_speed_time_s) o.low_speed_time_s = 60;
    if (!o.json_timeout_ms) o.json_timeout_ms = 120000;
    if (!o.deadline_ms) o.deadline_ms = XRPC_DEADLINE_MS_DEFAULT;
    if (!o.stream_deadline_ms) o.stream_deadline_ms = XRPC_STREAM_DEADLINE_MS_DEFAULT;
    if (!o.max_download_bytes) o.max_download_bytes = XRPC_MAX_DOWNLOAD_BYTES_DEFAULT;
    if (!o.max_retries) o.max_retries = XRPC_MAX_RETRIES_DEFAULT;
    if (o.max_retries < 0) o.max_retries = 0;
    if (!o.base_backoff_ms) o.base_backoff_ms = 500;
    if (!o.max_wait_ms) o.max_wait_ms = XRPC_MAX_WAIT_MS_DEFAULT;

    xrpc_client *c = calloc(1, sizeof *c);
    if (!c) { err_set(e, ERR_NOMEM, "out of memory"); return NULL; }
    c->opt = o;
    c->base = strdup(base_url);
    c->h = curl_easy_init();
    if (!c->base || !c->h) {
        xrpc_client_free(c);
        err_set(e, ERR_NOMEM, "cannot create an HTTP client");
        return NULL;
    }
    size_t bl = strlen(c->base);
    while (bl > 0 && c->base[bl - 1] == '/') c->base[--bl] = 0;
    c->opt.ratelimit_bypass_key = NULL; /* copied into c->bypass, not kept */
    if (o.ratelimit_bypass_key && xrpc_set_ratelimit_bypass(c, o.ratelimit_bypass_key, e)) {
        xrpc_client_free(c);
        return NULL;
    }
    return c;
}

void xrpc_client_free(xrpc_client *c) {
    if (!c) return;
    if (c->h) curl_easy_cleanup(c->h);
    free(c->base);
    wipe_free(c->bearer);
    wipe_free(c->userpwd);
    wipe_free(c->bypass);
    free(c);
}

const char *xrpc_client_base_url(const xrpc_client *c) { return c->base; }

err_code xrpc_set_bearer(xrpc_client *c, const char *token, err_t *e) {
    wipe_free(c->bearer);
    c->bearer = NULL;
    if (!token) return ERR_OK;
    size_t n = strlen("Authorization: Bearer ") + strlen(token) + 1;
    c->bearer = malloc(n);
    if (!c->bearer) return err_set(e, ERR_NOMEM, "out of memory");
    snprintf(c->bearer, n, "Authorization: Bearer %s", token);
    return ERR_OK;
}

err_code xrpc_set_basic_auth(xrpc_client *c, const char *user, const char *password, err_t *e) {
    wipe_free(c->userpwd);
    c->userpwd = NULL;
    if (!user) return ERR_OK;
    size_t n = strlen(user) + strlen(password) + 2;
    c->userpwd = malloc(n);
    if (!c->userpwd) return err_set(e, ERR_NOMEM, "out of memory");
    snprintf(c->userpwd, n, "%s:%s", user, password);
    return ERR_OK;
}

err_code xrpc_set_ratelimit_bypass(xrpc_client *c, const char *key, err_t *e) {
    wipe_free(c->bypass);
    c->bypass = NULL;
    if (!key) return ERR_OK;
    size_t kl = strlen(key);
    if (kl == 0 || kl > XRPC_BYPASS_KEY_MAX || strcspn(key, "\r\n") != kl)
        return err_set(e, ERR_USAGE, "the rate-limit bypass key must be one line of 1 to %d characters", XRPC_BYPASS_KEY_MAX);
    size_t n = strlen("x-ratelimit-bypass: ") + kl + 1;
    c->bypass = malloc(n);
    if (!c->bypass) return err_set(e, ERR_NOMEM, "out of memory");
    snprintf(c->bypass, n, "x-ratelimit-bypass: %s", key);
    return ERR_OK;
}

const char *xrpc_ratelimit_bypass_header(const xrpc_client *c) { return c->bypass; }
const xrpc_ratelimit *xrpc_last_ratelimit(const xrpc_client *c) { return &c->last_rl; }

long xrpc_last_status(const xrpc_client *c) { return c->last_status; }
const char *xrpc_last_error_name(const xrpc_client *c) { return c->last_error; }

/* ---- curl callbacks ---- */

static long long mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t over_cap(request *r) {
    err_set(&r->write_err, ERR_LIMIT, "the answer of %s is larger than the limit of %llu bytes (a broken or hostile "
            "server?)", r->server, (unsigned long long)r->max_bytes);
    return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud) {
    request *r = ud;
    size_t n = size * nmemb;
    r->last_byte_ms = mono_ms();
    if (r->sink_buf) {
        if (r->sink_buf->len + n > r->max_bytes) return over_cap(r);
        if (buf_append(r->sink_buf, data, n, &r->write_err)) return 0;
        return n;
    }
    if (r->sink_fd >= 0) {
        if (r->sink_bytes + n > r->max_bytes) return over_cap(r);
        size_t off = 0;
        while (off < n) {
            ssize_t w = write(r->sink_fd, data + off, n - off);
            if (w < 0) {
                if (errno == EINTR) continue;
                err_set(&r->write_err, ERR_IO, "writing the download to disk failed: %s%s", strerror(errno),
                        errno == ENOSPC ? " (the disk is full: free some space and run the command again)" : "");
                return 0;
            }
            off += (size_t)w;
        }
        r->sink_bytes += n;
        return n;
    }
    return n; /* discard */
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud) {
    request *r = ud;
    size_t n = size * nmemb;
    r->last_byte_ms = mono_ms();
    /* a redirect's or an interim response's headers do not count: only the final one's */
    if (n > 5 && !strncmp(data, "HTTP/", 5)) xrpc_ratelimit_clear(&r->rl);
    else xrpc_ratelimit_header(&r->rl, data, n);
    return n;
}

static size_t on_read(char *dst, size_t size, size_t nmemb, void *ud) {
    request *r = ud;
    ssize_t got;
    do { got = read(r->src_fd, dst, size * nmemb); } while (got < 0 && errno == EINTR);
    if (got < 0) return CURL_READFUNC_ABORT;
    r->last_byte_ms = mono_ms();
    return (size_t)got;
}

/* Called at least once a second while a transfer runs: a cancel, or a stream gone quiet. */
static int on_xferinfo(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    request *r = ud;
    if (r->cancel && atomic_load(r->cancel)) return 1;
    if (r->idle_limit_ms && mono_ms() - r->last_byte_ms > r->idle_limit_ms) {
        r->idle_hit = true;
        return 1;
    }
    return 0;
}

static bool cancelled(const xrpc_client *c) { return c->opt.cancel && atomic_load(c->opt.cancel); }

/* ---- one attempt, and the retry policy around it ---- */

static bool reset_for_attempt(request *r, err_t *e) {
    xrpc_ratelimit_clear(&r->rl);
    err_clear(&r->write_err);
    if (r->sink_buf) buf_reset(r->sink_buf);
    if (r->sink_fd >= 0) {
        if (ftruncate(r->sink_fd, 0) != 0 || lseek(r->sink_fd, 0, SEEK_SET) != 0) {
            err_set(e, ERR_IO, "cannot rewind the download file: %s", strerror(errno));
            return false;
        }
        r->sink_bytes = 0;
    }
    if (r->src_fd >= 0 && lseek(r->src_fd, 0, SEEK_SET) != 0) {
        err_set(e, ERR_IO, "cannot rewind the upload file: %s", strerror(errno));
        return false;
    }
    return true;
}

/* The time this attempt may take: what is left of the request's deadline (JSON: also at most
 * one json_timeout_ms). 0 when nothing is left. */
static long attempt_budget_ms(const xrpc_client *c, const request *r) {
    long long total = r->timeout_ms ? c->opt.deadline_ms : c->opt.stream_deadline_ms;
    long long left = total - (mono_ms() - r->started_ms - r->excused_ms);
    if (left <= 0) return 0;
    if (r->timeout_ms && left > r->timeout_ms) left = r->timeout_ms;
    return (long)left;
}

static CURLcode perform_once(xrpc_client *c, request *r, long budget_ms, long *status) {
    CURL *h = c->h;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, r->url);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "pdsmove/" PDSMOVE_VERSION " (+https://github.com/pdsmove/pdsmove)");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->opt.connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, c->opt.low_speed_time_s);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, budget_ms);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max_bytes); /* a declared size; on_body counts */
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_xferinfo);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, r);
    if (r->follow_redirects) {
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
        /* Redirects may leave loopback; never downgrade to plain http there. */
        curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, c->opt.allow_insecure_http || xrpc_url_is_loopback(c->base) ? "http,https" : "https");
    }
    struct curl_slist *hdrs = NULL;
    if (c->bearer) hdrs = curl_slist_append(hdrs, c->bearer);
    if (c->bypass) hdrs = curl_slist_append(hdrs, c->bypass);
    if (c->userpwd) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERPWD, c->userpwd);
    }
    char ct[160];
    if (!strcmp(r->method, "POST")) {
        snprintf(ct, sizeof ct, "Content-Type: %s", r->content_type ? r->content_type : "application/json");
        hdrs = curl_slist_append(hdrs, ct);
        hdrs = curl_slist_append(hdrs, "Expect:");
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        if (r->src_fd >= 0) {
            curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
            curl_easy_setopt(h, CURLOPT_READDATA, r);
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->src_size);
        } else {
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body ? r->body : "");
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(r->body ? r->body_len : 0));
        }
    }
    hdrs = curl_slist_append(hdrs, "Accept: application/json, application/vnd.ipld.car, */*");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    CURLcode rc = curl_easy_perform(h);
    *status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(hdrs);
    return rc;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* Fills c->last_error and an error message from an error response body. */
static err_code remote_error(xrpc_client *c, const char *what, long status, const buf_t *body, err_t *e) {
    const char *name = "";
    const char *message = "";
    json_t *j = NULL;
    if (body && body->len && body->len < 65536) {
        j = json_loadb((const char *)body->data, body->len, 0, NULL);
        if (json_is_object(j)) {
            if (json_is_string(json_object_get(j, "error"))) name = json_string_value(json_object_get(j, "error"));
            if (json_is_string(json_object_get(j, "message"))) message = json_string_value(json_object_get(j, "message"));
        }
    }
    snprintf(c->last_error, sizeof c->last_error, "%s", name);
    err_set(e, ERR_REMOTE, "%s: HTTP %ld%s%s%s%s", what, status, *name ? " " : "", name, *message ? ": " : "", message);
    json_decref(j);
    return ERR_REMOTE;
}

enum { DL_NONE, DL_TOTAL, DL_IDLE };

/* Which of r's deadlines waiting wait_ms more would pass (an attempt stopped as idle: DL_IDLE). */
static int past_deadline(const xrpc_client *c, const request *r, long wait_ms) {
    long long now = mono_ms();
    long long total = r->timeout_ms ? c->opt.deadline_ms : c->opt.stream_deadline_ms;
    if (r->idle_hit || (r->idle_limit_ms && now + wait_ms - r->last_byte_ms > r->idle_limit_ms)) return DL_IDLE;
    return now + wait_ms - r->started_ms - r->excused_ms >= total ? DL_TOTAL : DL_NONE;
}

/* A request that ran out of time: which server, how long, what to do. */
static err_code deadline_error(const xrpc_client *c, const request *r, int kind, const char *what, int attempts,
                               const char *last, err_t *e) {
    const char *s = attempts == 1 ? "" : "s";
    if (kind == DL_IDLE)
        return err_set(e, ERR_NETWORK, "%s: %s sent nothing for %ld s (%d attempt%s, last: %s); it may be down or "
                       "overloaded: try again later", what, r->server, r->idle_limit_ms / 1000, attempts, s, last);
    long total_s = (r->timeout_ms ? c->opt.deadline_ms : c->opt.stream_deadline_ms) / 1000;
    return err_set(e, ERR_NETWORK, "%s: %s did not %s within %ld s (%d attempt%s, last: %s); it may be down or "
                   "overloaded: try again later", what, r->server, r->timeout_ms ? "answer" : "finish the transfer",
                   total_s, attempts, s, last);
}

/* Runs r with retries. For fd sinks the error body is captured separately. */
static err_code run(xrpc_client *c, request *r, const char *what, buf_t *err_body, err_t *e) {
    c->last_status = 0;
    c->last_error[0] = 0;
    xrpc_ratelimit_clear(&c->last_rl);
    r->server = c->base;
    r->cancel = c->opt.cancel;
    if (!r->max_bytes) r->max_bytes = c->opt.max_download_bytes;
    r->started_ms = r->last_byte_ms = mono_ms();
    r->excused_ms = 0;
    r->idle_limit_ms = r->timeout_ms ? 0 : c->opt.deadline_ms;
    char why[400] = "no answer"; /* a long limit's description fits */
    for (int attempt = 0;; attempt++) {
        if (cancelled(c)) return err_set(e, ERR_CONFLICT, "%s: cancelled", what);
        if (!reset_for_attempt(r, e)) return ERR_IO;
        long budget_ms = attempt_budget_ms(c, r);
        if (!budget_ms) return deadline_error(c, r, DL_TOTAL, what, attempt, why, e);
        r->idle_hit = false;
        long status = 0;
        CURLcode rc = perform_once(c, r, budget_ms, &status);
        c->last_status = status;
        c->last_rl = r->rl;
        if (cancelled(c)) return err_set(e, ERR_CONFLICT, "%s: cancelled", what);
        if (rc == CURLE_FILESIZE_EXCEEDED) over_cap(r); /* the declared size was over the cap */
        if (r->write_err.code) {
            if (e) *e = r->write_err;
            return err_wrap(e, "%s", what);
        }
        int dl = rc == CURLE_ABORTED_BY_CALLBACK || rc == CURLE_OPERATION_TIMEDOUT ? past_deadline(c, r, 0) : DL_NONE;
        if (dl) return deadline_error(c, r, dl, what, attempt + 1, r->idle_hit ? "silence" : curl_easy_strerror(rc), e);
        bool retryable, long_wait = false;
        long wait_ms;
        if (rc != CURLE_OK) {
            if (rc == CURLE_SSL_CACERT || rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CONNECT_ERROR ||
                rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                rc == CURLE_TOO_MANY_REDIRECTS || rc == CURLE_ABORTED_BY_CALLBACK || rc == CURLE_READ_ERROR) {
                return err_set(e, ERR_NETWORK, "%s: %s (%s)", what, curl_easy_strerror(rc), r->url);
            }
            retryable = true;
            wait_ms = xrpc_backoff_ms(c->opt.base_backoff_ms, attempt, (unsigned)random());
            snprintf(why, sizeof why, "network error (%s)", curl_easy_strerror(rc));
            if (attempt >= c->opt.max_retries)
                return err_set(e, ERR_NETWORK, "%s: %s after %d attempts (%s)", what, curl_easy_strerror(rc), attempt + 1, r->url);
        } else if (status >= 200 && status < 300) {
            return ERR_OK;
        } else {
            /* Error bodies of streamed requests land in the fd; read them back small. */
            buf_t *body = r->sink_buf ? r->sink_buf : err_body;
            if (!r->sink_buf && err_body && r->sink_fd >= 0) {
                buf_reset(err_body);
                char tmp[4096];
                if (r->sink_bytes < sizeof tmp && lseek(r->sink_fd, 0, SEEK_SET) == 0) {
                    ssize_t got = read(r->sink_fd, tmp, sizeof tmp);
                    if (got > 0) buf_append(err_body, tmp, (size_t)got, NULL);
                }
            }
            if (status == 429) {
                long long now = (long long)time(NULL), wait_s = xrpc_ratelimit_wait_s(&r->rl, now);
                if (wait_s < 0) wait_ms = xrpc_backoff_ms(c->opt.base_backoff_ms * 4, attempt, (unsigned)random());
                else if (wait_s * 1000 <= c->opt.max_wait_ms) wait_ms = (long)(wait_s * 1000);
                else {
                    /* a long limit (a daily one): stop, resumable, unless told to wait it out */
                    char d[320];
                    xrpc_ratelimit_describe(&r->rl, now, d, sizeof d);
                    if (!c->opt.wait_for_limits || wait_s * 1000 > XRPC_LIMIT_WAIT_MAX_MS) {
                        snprintf(c->last_error, sizeof c->last_error, "RateLimitExceeded");
                        return err_set(e, ERR_RATELIMIT, "%s: %s %s", what, c->base, d);
                    }
                    wait_ms = (long)(wait_s * 1000);
                    long_wait = true;
                    snprintf(why, sizeof why, "rate limited (HTTP 429): %s", d);
                }
                if (!long_wait) snprintf(why, sizeof why, "rate limited (HTTP 429)");
                /* Rate limits are expected on long runs: allow more waits than for errors. */
                if (attempt >= c->opt.max_retries * 4) return remote_error(c, what, status, body, e);
            } else if (status >= 500 || status == 408) {
                wait_ms = xrpc_backoff_ms(c->opt.base_backoff_ms, attempt, (unsigned)random());
                snprintf(why, sizeof why, "server error (HTTP %ld)", status);
                if (attempt >= c->opt.max_retries) return remote_error(c, what, status, body, e);
            } else {
                return remote_error(c, what, status, body, e);
            }
            retryable = true;
        }
        assert(retryable);
        dl = status != 429 ? past_deadline(c, r, wait_ms) : DL_NONE;
        if (dl) return deadline_error(c, r, dl, what, attempt + 1, why, e);
        long long slept_from = mono_ms();
        if (c->opt.on_wait) c->opt.on_wait(c->opt.wait_ctx, c->base, why, wait_ms);
        for (long left = wait_ms; left > 0 && !cancelled(c); left -= 100) {
            if (long_wait && c->opt.on_limit_wait && left % 1000 < 100) c->opt.on_limit_wait(c->opt.wait_ctx, c->base, why, left);
            sleep_ms(left < 100 ? left : 100);
        }
        if (long_wait && c->opt.on_limit_wait) c->opt.on_limit_wait(c->opt.wait_ctx, c->base, why, 0);
        if (status == 429) { /* rate-limit waits are bounded on their own, not by the deadlines */
            r->excused_ms += mono_ms() - slept_from;
            r->last_byte_ms += mono_ms() - slept_from;
        }
    }
}

static err_code build_url(const xrpc_client *c, const char *nsid, const xrpc_param *params, char *out, size_t out_size,
                          err_t *e) {
    int n = snprintf(out, out_size, "%s/xrpc/%s", c->base, nsid);
    if (n < 0 || (size_t)n >= out_size) return err_set(e, ERR_LIMIT, "request URL too long");
    size_t len = (size_t)n;
    for (int i = 0; params && params[i].key; i++) {
        if (i >= XRPC_MAX_PARAMS) return err_set(e, ERR_LIMIT, "too many query parameters");
        if (!params[i].value) continue;
        char *esc = curl_easy_escape(c->h, params[i].value, 0);
        if (!esc) return err_set(e, ERR_NOMEM, "out of memory");
        n = snprintf(out + len, out_size - len, "%c%s=%s", strchr(out, '?') ? '&' : '?', params[i].key, esc);
        curl_free(esc);
        if (n < 0 || (size_t)n >= out_size - len) return err_set(e, ERR_LIMIT, "request URL too long");
        len += (size_t)n;
    }
    return ERR_OK;
}

static err_code parse_json_body(const buf_t *body, const char *what, json_t **out, err_t *e) {
    if (!out) return ERR_OK;
    *out = NULL;
    if (body->len == 0) return ERR_OK;
    json_error_t je;
    json_t *j = json_loadb((const char *)body->data, body->len, 0, &je);
    if (!j) return err_set(e, ERR_REMOTE, "%s: the server's reply is not valid JSON (%s)", what, je.text);
    *out = j;
    return ERR_OK;
}

static err_code json_call(xrpc_client *c, const char *method, const char *url, const json_t *body, json_t **out,
                          const char *what, err_t *e) {
    buf_t resp;
    buf_init(&resp, XRPC_MAX_JSON_BYTES);
    char *text = NULL;
    if (body) {
        text = json_dumps(body, JSON_COMPACT);
        if (!text) return err_set(e, ERR_NOMEM, "cannot serialise the request");
    }
    request r = {.method = method, .url = url, .body = text, .body_len = text ? strlen(text) : 0,
                 .src_fd = -1, .sink_buf = &resp, .sink_fd = -1, .timeout_ms = c->opt.json_timeout_ms,
                 .max_bytes = XRPC_MAX_JSON_BYTES, .follow_redirects = false};
    err_code rc = run(c, &r, what, NULL, e);
    if (text) {
        explicit_bzero(text, strlen(text)); /* may hold passwords or tokens */
        free(text);
    }
    if (rc == ERR_OK) rc = parse_json_body(&resp, what, out, e);
    if (resp.data) explicit_bzero(resp.data, resp.len); /* may hold session tokens */
    buf_free(&resp);
    return rc;
}

err_code xrpc_query(xrpc_client *c, const char *nsid, const xrpc_param *params, json_t **out, err_t *e) {
    char url[URL_MAX];
    err_code rc = build_url(c, nsid, params, url, sizeof url, e);
    if (rc) return rc;
    return json_call(c, "GET", url, NULL, out, nsid, e);
}

err_code xrpc_procedure(xrpc_client *c, const char *nsid, const json_t *body, json_t **out, err_t *e) {
    char url[URL_MAX];
    err_code rc = build_url(c, nsid, NULL, url, sizeof url, e);
    if (rc) return rc;
    return json_call(c, "POST", url, body, out, nsid, e);
}

err_code xrpc_get_json(xrpc_client *c, const char *path, json_t **out, err_t *e) {
    char url[URL_MAX];
    int n = snprintf(url, sizeof url, "%s%s%s", c->base, path[0] == '/' ? "" : "/", path);
    if (n < 0 || (size_t)n >= sizeof url) return err_set(e, ERR_LIMIT, "request URL too long");
    return json_call(c, "GET", url, NULL, out, path, e);
}

err_code xrpc_post_json(xrpc_client *c, const char *path, const json_t *body, json_t **out, err_t *e) {
    char url[URL_MAX];
    int n = snprintf(url, sizeof url, "%s%s%s", c->base, path[0] == '/' ? "" : "/", path);
    if (n < 0 || (size_t)n >= sizeof url) return err_set(e, ERR_LIMIT, "request URL too long");
    return json_call(c, "POST", url, body, out, path, e);
}

static err_code get_to_fd(xrpc_client *c, const char *url, const char *what, int fd, uint64_t *bytes_out, err_t *e) {
    buf_t err_body;
    buf_init(&err_body, 65536);
    request r = {.method = "GET", .url = url, .src_fd = -1, .sink_fd = fd, .follow_redirects = true};
    err_code rc = run(c, &r, what, &err_body, e);
    buf_free(&err_body);
    if (rc == ERR_OK && bytes_out) *bytes_out = r.sink_bytes;
    return rc;
}

err_code xrpc_query_to_fd(xrpc_client *c, const char *nsid, const xrpc_param *params, int fd, uint64_t *bytes_out,
                          err_t *e) {
    char url[URL_MAX];
    err_code rc = build_url(c, nsid, params, url, sizeof url, e);
    if (rc) return rc;
    return get_to_fd(c, url, nsid, fd, bytes_out, e);
}

err_code xrpc_get_to_fd(xrpc_client *c, const char *path, int fd, uint64_t *bytes_out, err_t *e) {
    char url[URL_MAX];
    int n = snprintf(url, sizeof url, "%s%s%s", c->base, path[0] == '/' ? "" : "/", path);
    if (n < 0 || (size_t)n >= sizeof url) return err_set(e, ERR_LIMIT, "request URL too long");
    return get_to_fd(c, url, path, fd, bytes_out, e);
}

err_code xrpc_procedure_from_fd(xrpc_client *c, const char *nsid, const char *content_type, int fd,
                                uint64_t size_bytes, json_t **out, err_t *e) {
    char url[URL_MAX];
    err_code rc = build_url(c, nsid, NULL, url, sizeof url, e);
    if (rc) return rc;
    buf_t resp;
    buf_init(&resp, XRPC_MAX_JSON_BYTES);
    request r = {.method = "POST", .url = url, .content_type = content_type, .src_fd = fd, .src_size = size_bytes,
                 .sink_buf = &resp, .sink_fd = -1, .max_bytes = XRPC_MAX_JSON_BYTES};
    rc = run(c, &r, nsid, NULL, e);
    if (rc == ERR_OK) rc = parse_json_body(&resp, nsid, out, e);
    buf_free(&resp);
    return rc;
}
