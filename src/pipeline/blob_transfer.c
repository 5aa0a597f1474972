/* blob_transfer.c — the blob loops (see blob_transfer.h): one thread drives a libcurl multi
 * handle with at most `jobs` transfers in flight (in each direction when a FETCH also uploads).
 * FETCH: getBlob → blobs/<cid>.part (redirects followed; hashed as the bytes arrive) → the hash
 * must match the CID → rename to blobs/<cid>. UPLOAD: blobs/<cid> re-hashed (a damaged local
 * copy goes back to FETCH) → uploadBlob → the returned CID must match.
 * Outcomes are journaled one by one, so a kill loses at most the transfers in flight. A 429
 * pauses new requests until ratelimit-reset and puts the blob back in the queue (not a failed
 * attempt); a limit that resets only much later (the reference PDS's 1000 uploads a day) ends
 * the loop with ERR_RATELIMIT once the transfers in flight are done, unless xo.wait_for_limits.
 * Other failures count as attempts and are retried in a later round with backoff.
 * A server is untrusted: a download stops at its cap (blob_cap), a transfer at the stream
 * deadline, and the loop when its servers send nothing for the deadline while transfers wait. */
#include "pdsmove/blob_transfer.h"
#include "pdsmove/backup_names.h"
#include "pdsmove/snapshot.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pdsmove/buf.h"
#include "pdsmove/hash.h"

#define BATCH_MAX 256
#define RESP_MAX_BYTES 65536

/* Whether a blob's SHA-256 is the one its CID names. */
static err_code digest_matches(const cid_t *cid, const uint8_t d[SHA256_BYTES], uint64_t size, err_t *e) {
    if (cid->hash_code != CID_HASH_SHA256 || cid->digest_len != SHA256_BYTES)
        return err_set(e, ERR_INVALID, "blob CID uses an unsupported hash");
    if (memcmp(d, cid_digest(cid), SHA256_BYTES) != 0) {
        char s[CID_STR_MAX];
        cid_format(cid, s, sizeof s);
        return err_set(e, ERR_MISMATCH, "blob %s: the downloaded bytes (%llu) do not hash to its CID", s,
                       (unsigned long long)size);
    }
    return ERR_OK;
}

err_code blob_verify_fd(int fd, const cid_t *cid, uint64_t *size_out, err_t *e) {
    if (cid->hash_code != CID_HASH_SHA256 || cid->digest_len != SHA256_BYTES)
        return err_set(e, ERR_INVALID, "blob CID uses an unsupported hash");
    hash_sha256_ctx *h = hash_sha256_new();
    if (!h) return err_set(e, ERR_NOMEM, "out of memory");
    uint8_t buf[65536];
    uint64_t total = 0;
    off_t off = 0;
    for (;;) {
        ssize_t n = pread(fd, buf, sizeof buf, off);
        if (n < 0) {
            if (errno == EINTR) continue;
            hash_sha256_free(h);
            return err_set(e, ERR_IO, "reading a downloaded blob: %s", strerror(errno));
        }
        if (n == 0) break;
        hash_sha256_update(h, buf, (size_t)n);
        off += n;
        total += (uint64_t)n;
    }
    uint8_t d[SHA256_BYTES];
    hash_sha256_final(h, d);
    if (size_out) *size_out = total;
    return digest_matches(cid, d, total, e);
}

err_code blob_list_into_journal(blob_transfer *t, int64_t *listed, err_t *e) {
    char cursor[256] = "";
    *listed = 0;
    for (int page = 0; page < 100000; page++) {
        xrpc_param p[] = {{"did", t->did}, {"limit", "1000"}, {"cursor", cursor[0] ? cursor : NULL}, {NULL, NULL}};
        json_t *out = NULL;
        err_code rc = pds_query(t->src, "com.atproto.sync.listBlobs", p, &out, e);
        if (rc) return err_wrap(e, "listing the blobs of %s", t->did);
        json_t *cids = json_object_get(out, "cids");
        if (!json_is_array(cids)) {
            json_decref(out);
            return err_set(e, ERR_REMOTE, "listBlobs answered without a cids list");
        }
        rc = journal_tx_begin(t->j, e);
        size_t i;
        json_t *v;
        json_array_foreach(cids, i, v) {
            if (rc) break;
            const char *s = json_string_value(v);
            /* It becomes a file name (blobs/<cid>): only the canonical form of a raw CID. */
            if (!s || !backup_name_cid(s, true, NULL)) {
                char q[BACKUP_NAME_QUOTE_MAX];
                rc = err_set(e, ERR_REMOTE, "listBlobs returned an invalid blob CID '%s'", s ? backup_name_quote(s, q) : "(not a string)");
                break;
            }
            rc = journal_blob_add(t->j, t->run_id, s, -1, e);
            (*listed)++;
        }
        if (rc) {
            journal_tx_rollback(t->j);
            json_decref(out);
            return rc;
        }
        rc = journal_tx_commit(t->j, e);
        const char *next = json_string_value(json_object_get(out, "cursor"));
        bool more = next && *next && json_array_size(cids) > 0 && strcmp(next, cursor) != 0;
        if (more) snprintf(cursor, sizeof cursor, "%s", next);
        json_decref(out);
        if (rc) return rc;
        if (!more) return ERR_OK;
    }
    return err_set(e, ERR_LIMIT, "listBlobs did not finish after 100000 pages");
}

/* ---- the multi loop ---- */

enum { PH_IDLE = 0, PH_DOWN, PH_UP };

typedef struct {
    int phase;
    CURL *h;
    int fd;
    char cid[128];
    char path[1200];
    uint64_t size;
    long status;
    xrpc_ratelimit rl;       /* rate-limit headers of the last answer */
    buf_t resp;              /* upload reply, or a download's error body */
    struct curl_slist *hdrs;
    hash_sha256_ctx *hash;   /* a download's bytes, hashed as they arrive */
    uint64_t cap;            /* a download larger than this stops (blob_cap) */
    bool over_cap;
    uint64_t *activity;      /* the loop's count of callbacks that moved bytes */
} slot;

typedef struct {
    blob_transfer *t;
    CURLM *multi;
    slot slots[2 * BLOB_JOBS_MAX]; /* downloads in [0, jobs); uploads of a FETCH call in [jobs, nslots) */
    int jobs, nslots;
    char (*queue)[128];
    size_t q_len, q_next;
    /* early uploads of a FETCH call (blob_transfer.uploads_open): a batch from the journal,
     * taken again when used up and something was fetched since */
    char (*upq)[128];
    size_t up_len, up_next;
    bool up_refill;
    time_t not_before;       /* no new request before this (429) */
    time_t long_until;       /* waiting out a long limit (wait_for_limits) until this */
    time_t last_tick;
    bool limited;            /* a long limit: no new request; the call ends with ERR_RATELIMIT */
    bool early_stopped;      /* a long limit on an early upload: no more of those this call */
    xrpc_ratelimit limited_rl;
    char limited_server[512];
    char long_server[512];
    bool too_large;
    bool expired;            /* a session token expired: refresh between rounds */
    uint64_t activity, activity_seen; /* bytes moved (slot.activity) and the value last looked at */
    long long quiet_ms;      /* time with transfers in flight and no bytes moving */
    long long tick_ms;       /* when quiet_ms was last brought up to date */
    err_t fatal;
    /* journal writes are grouped: one transaction per JOURNAL_BATCH outcomes or per
     * JOURNAL_BATCH_MS (a commit per blob would mean an fsync per blob); a kill loses at most
     * that many outcomes, and redoing a fetch or an upload is harmless */
    bool in_tx;
    int tx_pending;
    struct timespec tx_started;
} loop;

#define JOURNAL_BATCH 64
#define JOURNAL_BATCH_MS 500

static size_t on_down(char *data, size_t size, size_t nmemb, void *ud) {
    slot *s = ud;
    size_t n = size * nmemb;
    long code = 0;
    (*s->activity)++;
    curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 300) return buf_append(&s->resp, data, n, NULL) == ERR_OK || s->resp.len >= RESP_MAX_BYTES ? n : 0;
    if (s->size + n > s->cap) {
        s->over_cap = true;
        return 0;
    }
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(s->fd, data + off, n - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return 0; /* ENOSPC and friends: the transfer fails with CURLE_WRITE_ERROR */
        }
        off += (size_t)w;
    }
    hash_sha256_update(s->hash, data, n);
    s->size += n;
    return n;
}

static size_t on_resp(char *data, size_t size, size_t nmemb, void *ud) {
    slot *s = ud;
    size_t n = size * nmemb;
    (*s->activity)++;
    buf_append(&s->resp, data, n, NULL); /* beyond the limit it is just cut */
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud) {
    slot *s = ud;
    size_t n = size * nmemb;
    (*s->activity)++;
    if (n > 5 && !strncmp(data, "HTTP/", 5)) xrpc_ratelimit_clear(&s->rl); /* a redirect's do not count */
    else xrpc_ratelimit_header(&s->rl, data, n);
    return n;
}

static size_t on_read(char *dst, size_t size, size_t nmemb, void *ud) {
    slot *s = ud;
    ssize_t got;
    do { got = read(s->fd, dst, size * nmemb); } while (got < 0 && errno == EINTR);
    (*s->activity)++;
    return got < 0 ? CURL_READFUNC_ABORT : (size_t)got;
}

/* The most a download may bring: the new PDS's upload limit when known, else the download cap
 * (--max-repo-bytes). The blob's own size is not known before its download. */
static uint64_t blob_cap(const blob_transfer *t) {
    uint64_t cap = t->xo.max_download_bytes ? t->xo.max_download_bytes : XRPC_MAX_DOWNLOAD_BYTES_DEFAULT;
    return t->max_blob_bytes && t->max_blob_bytes < cap ? t->max_blob_bytes : cap;
}

static void common_opts(slot *s, const char *url, const char *bearer, const char *bypass, long timeout_ms,
                        bool insecure_redirects) {
    curl_easy_reset(s->h);
    curl_easy_setopt(s->h, CURLOPT_URL, url);
    curl_easy_setopt(s->h, CURLOPT_USERAGENT, "pdsmove/" PDSMOVE_VERSION);
    curl_easy_setopt(s->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s->h, CURLOPT_CONNECTTIMEOUT_MS, 15000L);
    curl_easy_setopt(s->h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(s->h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(s->h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(s->h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(s->h, CURLOPT_PIPEWAIT, 1L); /* share HTTP/2 connections */
    curl_easy_setopt(s->h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(s->h, CURLOPT_HEADERDATA, s);
    curl_easy_setopt(s->h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(s->h, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(s->h, CURLOPT_REDIR_PROTOCOLS_STR, insecure_redirects ? "http,https" : "https");
    curl_slist_free_all(s->hdrs);
    s->hdrs = NULL;
    if (bearer) {
        char h[4200];
        snprintf(h, sizeof h, "Authorization: Bearer %s", bearer);
        s->hdrs = curl_slist_append(s->hdrs, h);
        explicit_bzero(h, sizeof h);
    }
    if (bypass) s->hdrs = curl_slist_append(s->hdrs, bypass);
    xrpc_ratelimit_clear(&s->rl);
    s->status = 0;
    s->over_cap = false;
    buf_reset(&s->resp);
}

static long stream_deadline_ms(const blob_transfer *t) {
    return t->xo.stream_deadline_ms ? t->xo.stream_deadline_ms : XRPC_STREAM_DEADLINE_MS_DEFAULT;
}

static bool loopback_or_insecure(const loop *l, const char *url) {
    return l->t->xo.allow_insecure_http || xrpc_url_is_loopback(url);
}

static err_code start_download(loop *l, slot *s, const char *cid, err_t *e) {
    blob_transfer *t = l->t;
    snprintf(s->cid, sizeof s->cid, "%s", cid);
    snprintf(s->path, sizeof s->path, "%s/%s.part", t->dir, cid);
    s->fd = open(s->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (s->fd < 0) return err_set(e, ERR_IO, "cannot create %s: %s", s->path, strerror(errno));
    s->size = 0;
    hash_sha256_free(s->hash);
    s->hash = hash_sha256_new();
    if (!s->hash) {
        close(s->fd);
        s->fd = -1;
        unlink(s->path);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    char *ed = curl_easy_escape(s->h, t->did, 0), *ec = curl_easy_escape(s->h, cid, 0);
    char url[2048];
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.sync.getBlob?did=%s&cid=%s", t->src->url, ed ? ed : "", ec ? ec : "");
    curl_free(ed);
    curl_free(ec);
    common_opts(s, url, t->src->access_jwt, xrpc_ratelimit_bypass_header(t->src->c), stream_deadline_ms(t),
                loopback_or_insecure(l, t->src->url));
    s->cap = blob_cap(t);
    curl_easy_setopt(s->h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)s->cap); /* a declared size; on_down counts */
    curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, on_down);
    curl_easy_setopt(s->h, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(s->h, CURLOPT_HTTPHEADER, s->hdrs);
    s->phase = PH_DOWN;
    curl_multi_add_handle(l->multi, s->h);
    return ERR_OK;
}

static void start_upload(loop *l, slot *s) {
    blob_transfer *t = l->t;
    s->path[0] = 0; /* the snapshot's copy stays */
    lseek(s->fd, 0, SEEK_SET);
    char url[1024];
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.repo.uploadBlob", t->dst->url);
    common_opts(s, url, t->dst->access_jwt, xrpc_ratelimit_bypass_header(t->dst->c), stream_deadline_ms(t), false);
    s->hdrs = curl_slist_append(s->hdrs, "Content-Type: application/octet-stream");
    s->hdrs = curl_slist_append(s->hdrs, "Expect:");
    curl_easy_setopt(s->h, CURLOPT_HTTPHEADER, s->hdrs);
    curl_easy_setopt(s->h, CURLOPT_POST, 1L);
    curl_easy_setopt(s->h, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(s->h, CURLOPT_READDATA, s);
    curl_easy_setopt(s->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->size);
    curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, on_resp);
    curl_easy_setopt(s->h, CURLOPT_WRITEDATA, s);
    s->phase = PH_UP;
    curl_multi_add_handle(l->multi, s->h);
}

/* Closes the slot; a leftover .part file (a failed download) is removed. */
static void finish_slot(slot *s) {
    hash_sha256_free(s->hash);
    s->hash = NULL;
    if (s->fd >= 0) close(s->fd);
    s->fd = -1;
    if (s->path[0]) unlink(s->path);
    s->path[0] = 0;
    s->phase = PH_IDLE;
}

static void tx_commit(loop *l) {
    if (!l->in_tx) return;
    err_t e;
    l->in_tx = false;
    if (journal_tx_commit(l->t->j, &e) && !l->fatal.code) l->fatal = e;
}

/* Before an outcome is written: make sure a transaction is open. */
static void tx_open(loop *l) {
    if (l->in_tx) return;
    if (journal_tx_begin(l->t->j, NULL) == ERR_OK) {
        l->in_tx = true;
        l->tx_pending = 0;
        clock_gettime(CLOCK_MONOTONIC, &l->tx_started);
    }
}

/* After an outcome is written: commit when the batch is full or old enough. */
static void tx_note(loop *l) {
    if (!l->in_tx) return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (now.tv_sec - l->tx_started.tv_sec) * 1000 + (now.tv_nsec - l->tx_started.tv_nsec) / 1000000;
    if (++l->tx_pending >= JOURNAL_BATCH || ms >= JOURNAL_BATCH_MS) tx_commit(l);
}

static void record_fetched(loop *l, slot *s, bool fetched) {
    err_t e;
    tx_open(l);
    if (journal_blob_set_fetched(l->t->j, l->t->run_id, s->cid, fetched, fetched ? (int64_t)s->size : -1, &e) && !l->fatal.code)
        l->fatal = e;
    tx_note(l);
    if (fetched) l->up_refill = true;
}

/* "HTTP 500 InternalServerError: message" from a reply body. */
static void describe_http(const slot *s, const char *what, char *out, size_t size) {
    const char *name = "", *msg = "";
    json_t *j = s->resp.len ? json_loadb((const char *)s->resp.data, s->resp.len, 0, NULL) : NULL;
    if (json_is_string(json_object_get(j, "error"))) name = json_string_value(json_object_get(j, "error"));
    if (json_is_string(json_object_get(j, "message"))) msg = json_string_value(json_object_get(j, "message"));
    snprintf(out, size, "%s of blob %s: HTTP %ld %s%s%s", what, s->cid, s->status, name, *msg ? ": " : "", msg);
    json_decref(j);
}

static void record(loop *l, slot *s, journal_blob_status st, const char *error) {
    err_t e;
    tx_open(l);
    if (journal_blob_set(l->t->j, l->t->run_id, s->cid, st, st == BLOB_DONE ? (int64_t)s->size : -1, error, &e) && !l->fatal.code)
        l->fatal = e;
    tx_note(l);
}

/* Puts a blob back at the end of this round's queue (a 429 is not a failed attempt). */
static void requeue(loop *l, const char *cid) {
    if (l->q_len == BATCH_MAX) { /* drop the consumed head; the caller consumed at least one */
        memmove(l->queue, l->queue + l->q_next, (l->q_len - l->q_next) * sizeof l->queue[0]);
        l->q_len -= l->q_next;
        l->q_next = 0;
    }
    snprintf(l->queue[l->q_len++], sizeof l->queue[0], "%s", cid);
}

static void on_rate_limited(loop *l, slot *s) {
    const xrpc_options *xo = &l->t->xo;
    const char *server = s->phase == PH_UP ? l->t->dst->url : l->t->src->url;
    long max_ms = xo->max_wait_ms ? xo->max_wait_ms : XRPC_MAX_WAIT_MS_DEFAULT;
    time_t now = time(NULL);
    long long wait_s = xrpc_ratelimit_wait_s(&s->rl, (long long)now);
    if (wait_s < 0) wait_s = 5;
    bool long_limit = wait_s * 1000 > max_ms;
    bool early_upload = s->phase == PH_UP && l->t->phase == BLOB_PHASE_FETCH;
    if (long_limit && early_upload) {
        l->early_stopped = true; /* the downloads go on; the UPLOAD phase meets the limit again */
    } else if (long_limit && (!xo->wait_for_limits || wait_s * 1000 > XRPC_LIMIT_WAIT_MAX_MS)) {
        if (!l->limited) {
            l->limited = true;
            l->limited_rl = s->rl;
            snprintf(l->limited_server, sizeof l->limited_server, "%s", server);
        }
    } else if (now + wait_s > l->not_before) {
        l->not_before = now + (time_t)wait_s;
        if (long_limit) {
            l->long_until = l->not_before;
            snprintf(l->long_server, sizeof l->long_server, "%s", server);
        }
        char why[400] = "rate limited (HTTP 429)";
        if (long_limit) {
            char d[320];
            xrpc_ratelimit_describe(&s->rl, (long long)now, d, sizeof d);
            snprintf(why, sizeof why, "rate limited (HTTP 429): %s", d);
        }
        if (xo->on_wait) xo->on_wait(xo->wait_ctx, server, why, (long)(wait_s * 1000));
    }
    char cid[128];
    snprintf(cid, sizeof cid, "%s", s->cid);
    finish_slot(s);
    if (early_upload) l->up_refill = true; /* still untried: the next batch has it again */
    else requeue(l, cid);
}

/* A download past its cap: over the new PDS's limit, the blob waits like any too-large one;
 * over the download cap, the server is broken or hostile and the loop stops. */
static void on_over_cap(loop *l, slot *s) {
    blob_transfer *t = l->t;
    char msg[ERR_MSG_MAX];
    if (t->max_blob_bytes && s->cap == t->max_blob_bytes) {
        snprintf(msg, sizeof msg, "blob %s is over the new PDS's upload limit of %llu bytes", s->cid,
                 (unsigned long long)s->cap);
        l->too_large = true;
    } else {
        snprintf(msg, sizeof msg, "the download of blob %s from %s went over the limit of %llu bytes", s->cid,
                 t->src->url, (unsigned long long)s->cap);
        if (!l->fatal.code)
            err_set(&l->fatal, ERR_LIMIT, "%s (a broken or hostile server?); if the blob really is that large, give a "
                    "larger --max-repo-bytes", msg);
    }
    record(l, s, BLOB_FAILED, msg);
    finish_slot(s);
}

static void on_done(loop *l, slot *s, CURLcode res) {
    blob_transfer *t = l->t;
    curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &s->status);
    curl_multi_remove_handle(l->multi, s->h);
    char msg[ERR_MSG_MAX];
    if (s->phase == PH_DOWN && (s->over_cap || res == CURLE_FILESIZE_EXCEEDED)) {
        on_over_cap(l, s);
        return;
    }
    if (res != CURLE_OK) {
        snprintf(msg, sizeof msg, "%s of blob %s: %s", s->phase == PH_DOWN ? "download" : "upload", s->cid,
                 res == CURLE_WRITE_ERROR ? "cannot write to disk (is it full?)" : curl_easy_strerror(res));
        record(l, s, BLOB_FAILED, msg);
        finish_slot(s);
        return;
    }
    if (s->status == 429) {
        on_rate_limited(l, s);
        return;
    }
    if (s->status < 200 || s->status >= 300) {
        describe_http(s, s->phase == PH_DOWN ? "download" : "upload", msg, sizeof msg);
        if (strstr(msg, "ExpiredToken")) l->expired = true;
        if (s->phase == PH_UP && s->status == 413) {
            snprintf(msg, sizeof msg, "the new PDS refused blob %s (%llu bytes) as too large (HTTP 413): its operator must raise "
                                      "PDS_BLOB_UPLOAD_LIMIT", s->cid, (unsigned long long)s->size);
            l->too_large = true;
        }
        record(l, s, BLOB_FAILED, msg);
        finish_slot(s);
        return;
    }
    if (s->phase == PH_DOWN) {
        cid_t c;
        err_t e;
        uint8_t d[SHA256_BYTES];
        hash_sha256_final(s->hash, d);
        s->hash = NULL;
        if (cid_parse(&c, s->cid, &e) || digest_matches(&c, d, s->size, &e)) {
            record(l, s, BLOB_FAILED, e.msg);
            finish_slot(s);
            return;
        }
        if (t->max_blob_bytes && s->size > t->max_blob_bytes) {
            snprintf(msg, sizeof msg, "blob %s is %llu bytes, over the new PDS's upload limit of %llu bytes", s->cid,
                     (unsigned long long)s->size, (unsigned long long)t->max_blob_bytes);
            l->too_large = true;
            record(l, s, BLOB_FAILED, msg);
            finish_slot(s);
            return;
        }
        char final_path[1200];
        snprintf(final_path, sizeof final_path, "%s/%s", t->dir, s->cid);
        /* no fsync per blob: after a crash the upload phase re-hashes every file and fetches a
         * damaged one again */
        if (rename(s->path, final_path) != 0) {
            snprintf(msg, sizeof msg, "storing blob %s in %s: %s", s->cid, t->dir, strerror(errno));
            record(l, s, BLOB_FAILED, msg);
            finish_slot(s);
            return;
        }
        s->path[0] = 0;
        record_fetched(l, s, true);
        t->transferred++;
        finish_slot(s);
        return;
    }
    /* upload: the PDS must have stored the same bytes under the same CID */
    json_t *out = s->resp.len ? json_loadb((const char *)s->resp.data, s->resp.len, 0, NULL) : NULL;
    const char *link = json_string_value(json_object_get(json_object_get(json_object_get(out, "blob"), "ref"), "$link"));
    if (!link || strcmp(link, s->cid)) {
        snprintf(msg, sizeof msg, "the new PDS stored blob %s under another CID (%s)", s->cid, link ? link : "none");
        record(l, s, BLOB_FAILED, msg);
    } else {
        record(l, s, BLOB_DONE, NULL);
        if (t->phase == BLOB_PHASE_FETCH) t->uploaded++;
        else t->transferred++;
    }
    json_decref(out);
    finish_slot(s);
}

/* UPLOAD: opens and re-checks the snapshot's copy, then starts the upload. */
static void begin_upload(loop *l, slot *s, const char *cid) {
    blob_transfer *t = l->t;
    snprintf(s->cid, sizeof s->cid, "%s", cid);
    char path[1200], msg[ERR_MSG_MAX];
    snprintf(path, sizeof path, "%s/%s", t->dir, cid);
    s->path[0] = 0;
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
    cid_t c;
    err_t e;
    if (s->fd < 0 || cid_parse(&c, cid, &e) || blob_verify_fd(s->fd, &c, &s->size, &e)) {
        /* gone or damaged: fetch it again */
        snprintf(msg, sizeof msg, "the local copy of blob %s is %s; fetching it again", cid, s->fd < 0 ? "missing" : "damaged");
        record(l, s, BLOB_FAILED, msg);
        record_fetched(l, s, false);
        if (s->fd >= 0) unlink(path);
        finish_slot(s);
        return;
    }
    if (t->max_blob_bytes && s->size > t->max_blob_bytes) {
        snprintf(msg, sizeof msg, "blob %s is %llu bytes, over the new PDS's upload limit of %llu bytes", cid,
                 (unsigned long long)s->size, (unsigned long long)t->max_blob_bytes);
        l->too_large = true;
        record(l, s, BLOB_FAILED, msg);
        finish_slot(s);
        return;
    }
    start_upload(l, s);
}

static void progress(loop *l, const char *cid) {
    if (!l->t->progress) return;
    journal_blob_counts c;
    if (journal_blob_counts_get(l->t->j, l->t->run_id, &c, NULL) == ERR_OK) l->t->progress(l->t->ctx, &c, cid);
}

static bool uploads_open(const loop *l) {
    return l->nslots > l->jobs && atomic_load(l->t->uploads_open);
}

static bool in_flight(const loop *l, const char *cid) {
    for (int i = 0; i < l->nslots; i++)
        if (l->slots[i].phase != PH_IDLE && !strcmp(l->slots[i].cid, cid)) return true;
    return false;
}

/* The next early upload: fetched, never tried, not in flight. NULL when there is none now. */
static const char *next_early_upload(loop *l) {
    if (l->up_next >= l->up_len) {
        if (!l->up_refill) return NULL;
        l->up_refill = false;
        size_t n = 0;
        if (journal_blob_next(l->t->j, l->t->run_id, BLOB_PHASE_UPLOAD, 1, l->upq, BATCH_MAX, &n, NULL) != ERR_OK) n = 0;
        l->up_len = l->up_next = 0;
        for (size_t i = 0; i < n; i++)
            if (!in_flight(l, l->upq[i])) memmove(l->upq[l->up_len++], l->upq[i], sizeof l->upq[0]);
    }
    return l->up_next < l->up_len ? l->upq[l->up_next++] : NULL;
}

static long long mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Servers that accept and never answer: each transfer would wait out the low-speed rule and
 * be tried again, blob after blob. Time with transfers in flight and no byte moving either
 * way adds up across transfers and rounds; past the deadline the loop stops, naming the server. */
static void check_quiet(loop *l, int running) {
    long long now = mono_ms();
    if (l->activity != l->activity_seen) l->quiet_ms = 0;
    else if (running > 0) l->quiet_ms += now - l->tick_ms;
    l->activity_seen = l->activity;
    l->tick_ms = now;
    long deadline_ms = l->t->xo.deadline_ms ? l->t->xo.deadline_ms : XRPC_DEADLINE_MS_DEFAULT;
    if (l->quiet_ms <= deadline_ms || l->fatal.code) return;
    bool downloading = false;
    for (int i = 0; i < l->nslots; i++) downloading = downloading || l->slots[i].phase == PH_DOWN;
    const pds_session *quiet = downloading || !l->t->dst ? l->t->src : l->t->dst;
    err_set(&l->fatal, ERR_NETWORK, "copying blobs: %s sent nothing for %ld s while %d transfer%s waited; it may be "
            "down or overloaded: run the same command again later (what was copied is kept)", quiet->url,
            deadline_ms / 1000, running, running == 1 ? "" : "s");
}

/* One round: everything blob_next offers, with at most jobs in flight. */
static err_code run_round(loop *l, size_t *attempted, err_t *e) {
    blob_transfer *t = l->t;
    err_code rc = journal_blob_next(t->j, t->run_id, t->phase, BLOB_MAX_ATTEMPTS, l->queue, BATCH_MAX, &l->q_len, e);
    if (rc) return rc;
    l->q_next = 0;
    *attempted = l->q_len;
    time_t last_progress = 0;
    int active = 0;
    l->tick_ms = mono_ms(); /* the pause between rounds is not quiet time */
    for (;;) {
        time_t now = time(NULL);
        bool downloading = false;
        if (l->long_until && now < l->long_until && now != l->last_tick && t->xo.on_limit_wait) {
            l->last_tick = now;
            t->xo.on_limit_wait(t->xo.wait_ctx, l->long_server, "rate limited (HTTP 429)", (long)(l->long_until - now) * 1000);
        }
        if (l->long_until && now >= l->long_until) {
            l->long_until = 0;
            if (t->xo.on_limit_wait) t->xo.on_limit_wait(t->xo.wait_ctx, l->long_server, "rate limited (HTTP 429)", 0);
        }
        for (int i = 0; i < l->jobs && l->q_next < l->q_len && now >= l->not_before && !l->limited; i++) {
            slot *s = &l->slots[i];
            if (s->phase != PH_IDLE) continue;
            if (t->phase == BLOB_PHASE_UPLOAD) {
                begin_upload(l, s, l->queue[l->q_next++]);
                continue;
            }
            err_t se;
            if (start_download(l, s, l->queue[l->q_next++], &se)) {
                tx_commit(l);
                err_set(e, se.code, "%s", se.msg);
                return se.code;
            }
        }
        for (int i = 0; i < l->jobs; i++) downloading = downloading || l->slots[i].phase != PH_IDLE;
        /* early uploads only while downloads go on: the rest is the UPLOAD phase's */
        for (int i = l->jobs; i < l->nslots && downloading && now >= l->not_before && !l->too_large && !l->limited && !l->early_stopped && uploads_open(l); i++) {
            slot *s = &l->slots[i];
            if (s->phase != PH_IDLE) continue;
            const char *cid = next_early_upload(l);
            if (!cid) break;
            begin_upload(l, s, cid);
        }
        curl_multi_perform(l->multi, &active);
        CURLMsg *msg;
        int left;
        bool finished_any = false;
        while ((msg = curl_multi_info_read(l->multi, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            for (int i = 0; i < l->nslots; i++) {
                if (l->slots[i].h == msg->easy_handle && l->slots[i].phase != PH_IDLE) {
                    on_done(l, &l->slots[i], msg->data.result);
                    finished_any = true;
                    break;
                }
            }
        }
        check_quiet(l, active);
        if (l->fatal.code) {
            tx_commit(l);
            if (e) *e = l->fatal;
            return l->fatal.code;
        }
        bool busy = false;
        for (int i = 0; i < l->nslots; i++) busy = busy || l->slots[i].phase != PH_IDLE;
        if (finished_any && time(NULL) != last_progress) {
            tx_commit(l);
            progress(l, NULL);
            last_progress = time(NULL);
        }
        if (!busy && l->q_next >= l->q_len) break;
        if ((l->too_large || l->limited) && !busy) break;
        /* waiting for the import to finish: look again soon */
        bool gate = l->nslots > l->jobs && !uploads_open(l);
        curl_multi_poll(l->multi, NULL, 0, gate ? 50 : busy ? 200 : 500, NULL);
    }
    tx_commit(l);
    progress(l, NULL);
    return l->fatal.code ? (e ? (*e = l->fatal).code : l->fatal.code) : ERR_OK;
}

err_code blob_transfer_run(blob_transfer *t, err_t *e) {
    if (mkdir(t->dir, 0700) != 0 && errno != EEXIST) return err_set(e, ERR_IO, "cannot create %s: %s", t->dir, strerror(errno));
    curl_global_init(CURL_GLOBAL_DEFAULT);
    loop *l = calloc(1, sizeof *l);
    char (*queue)[128] = calloc(BATCH_MAX, sizeof *queue);
    bool early = t->phase == BLOB_PHASE_FETCH && t->dst && t->uploads_open;
    char (*upq)[128] = early ? calloc(BATCH_MAX, sizeof *upq) : NULL;
    if (!l || !queue || (early && !upq)) {
        free(l);
        free(queue);
        free(upq);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    l->t = t;
    l->queue = queue;
    l->upq = upq;
    l->up_refill = true;
    l->jobs = t->jobs < 1 ? 1 : t->jobs > BLOB_JOBS_MAX ? BLOB_JOBS_MAX : t->jobs;
    l->nslots = early ? 2 * l->jobs : l->jobs;
    l->multi = curl_multi_init();
    curl_multi_setopt(l->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)l->nslots * 2);
    err_code rc = l->multi ? ERR_OK : err_set(e, ERR_NOMEM, "cannot create the transfer loop");
    for (int i = 0; i < l->nslots && !rc; i++) {
        l->slots[i].fd = -1;
        l->slots[i].activity = &l->activity;
        buf_init(&l->slots[i].resp, RESP_MAX_BYTES);
        l->slots[i].h = curl_easy_init();
        if (!l->slots[i].h) rc = err_set(e, ERR_NOMEM, "cannot create a transfer");
    }
    /* Rounds until nothing is left to try; failed blobs wait a little longer each round. */
    for (int round = 0; !rc; round++) {
        size_t attempted = 0;
        rc = run_round(l, &attempted, e);
        if (rc || attempted == 0) break;
        if (l->limited) {
            char d[320];
            long long now = (long long)time(NULL);
            xrpc_ratelimit_describe(&l->limited_rl, now, d, sizeof d);
            t->limit_reset_s = xrpc_ratelimit_reset_at(&l->limited_rl, now);
            rc = err_set(e, ERR_RATELIMIT, "%s blobs: %s %s", t->src && !strcmp(l->limited_server, t->src->url) ? "downloading" : "uploading",
                         l->limited_server, d);
            break;
        }
        if (l->too_large) {
            journal_blob_counts c;
            journal_blob_counts_get(t->j, t->run_id, &c, NULL);
            rc = err_set(e, ERR_LIMIT, "some blobs are larger than the new PDS accepts (see the journal's blob errors); "
                                       "its operator must raise PDS_BLOB_UPLOAD_LIMIT, then run the same command again");
            break;
        }
        if (l->expired) {
            l->expired = false;
            if ((t->src && pds_refresh(t->src, e)) || (t->dst && pds_refresh(t->dst, e))) {
                rc = err_wrap(e, "copying blobs");
                break;
            }
        }
        journal_blob_counts c;
        if (journal_blob_counts_get(t->j, t->run_id, &c, NULL) == ERR_OK && c.failed > 0 && round < 8) {
            long ms = xrpc_backoff_ms(t->xo.base_backoff_ms ? t->xo.base_backoff_ms : 500, round, (unsigned)random());
            if (t->xo.on_wait) t->xo.on_wait(t->xo.wait_ctx, (t->src ? t->src : t->dst)->url, "retrying failed blob transfers", ms);
            struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    for (int i = 0; i < l->nslots; i++) {
        slot *s = &l->slots[i];
        if (s->phase != PH_IDLE) curl_multi_remove_handle(l->multi, s->h);
        finish_slot(s);
        curl_slist_free_all(s->hdrs);
        buf_free(&s->resp);
        if (s->h) curl_easy_cleanup(s->h);
    }
    if (l->multi) curl_multi_cleanup(l->multi);
    free(upq);
    free(queue);
    free(l);
    return rc;
}

/* "1,050" */
static void fmt_count(long long n, char *out, size_t size) {
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%lld", n < 0 ? 0 : n);
    size_t o = 0;
    for (int i = 0; i < len && o + 2 < size; i++) {
        if (i && (len - i) % 3 == 0) out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = 0;
}

void blob_upload_forecast(long long blobs, bool waits, char *out, size_t size) {
    char n[32];
    fmt_count(blobs, n, sizeof n);
    if (blobs < 0) {
        snprintf(out, size, "the new PDS enforces rate limits: if it is like the reference PDS, it takes %d blob uploads a day "
                            "from this address, and more blobs than that mean a pause of up to 24 hours%s", BLOB_REF_UPLOADS_PER_DAY,
                 waits ? "" : " unless you give --new-pds-ratelimit-bypass-key-file");
        return;
    }
    if (blobs <= BLOB_REF_UPLOADS_PER_DAY) {
        snprintf(out, size, "the new PDS enforces rate limits; the %s blobs fit in its %d uploads a day from this address", n,
                 BLOB_REF_UPLOADS_PER_DAY);
        return;
    }
    long long pauses = (blobs - 1) / BLOB_REF_UPLOADS_PER_DAY;
    char times[32];
    if (pauses == 1) snprintf(times, sizeof times, "once");
    else if (pauses == 2) snprintf(times, sizeof times, "twice");
    else snprintf(times, sizeof times, "%lld times", pauses);
    snprintf(out, size, "the new PDS enforces rate limits: %s blobs at %d uploads a day from this address means the move %s %s, "
                        "for up to 24 hours%s%s", n, BLOB_REF_UPLOADS_PER_DAY, waits ? "waits" : "pauses", times,
             pauses > 1 ? " each" : "", waits ? "" : ", unless you give --new-pds-ratelimit-bypass-key-file");
}

err_code blob_bypass_refused(const char *url, err_t *e) {
    return err_set(e, ERR_USAGE, "the new PDS %s still applies rate limits to a request carrying the key from "
                                 "--new-pds-ratelimit-bypass-key-file: that key is not its PDS_RATE_LIMIT_BYPASS_KEY (check "
                                 "the file, and that the PDS was restarted after the key was set)", url);
}

typedef struct {
    journal *j;
    int64_t run_id, n;
} list_journal_ctx;

static err_code journal_listed_blob(void *ctx, const char *cid, err_t *e) {
    list_journal_ctx *c = ctx;
    err_code rc = journal_blob_add(c->j, c->run_id, cid, -1, e);
    if (!rc) rc = journal_blob_set_fetched(c->j, c->run_id, cid, true, -1, e);
    c->n++;
    return rc;
}

/* Each line is checked (a canonical raw CID) before it is journaled: the upload opens
 * <blobs>/<cid> and removes a damaged copy by that name. */
err_code blob_list_from_snapshot(journal *j, int64_t run_id, const char *snapshot_dir, int64_t *listed, err_t *e) {
    list_journal_ctx c = {j, run_id, 0};
    err_code rc = journal_tx_begin(j, e);
    if (!rc) rc = snapshot_blob_list_each(snapshot_dir, journal_listed_blob, &c, e);
    if (rc) {
        journal_tx_rollback(j);
        return rc;
    }
    if (listed) *listed = c.n;
    return journal_tx_commit(j, e);
}
