/* cli_progress.c — transfer progress for long steps (export, import, blob download/upload):
 * one line redrawn in place on a terminal (bar, counts, bytes, rate, time left), or a plain
 * line now and then when stderr is a file or a pipe. Time is passed in, so tests can drive it.
 * Uses only libc: tests/test_cli_migrate.c compiles this file into the unit tests. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define LIVE_MIN_INTERVAL_S 0.1   /* redraws at most ten times a second */
#define SAMPLE_SPACING_S 0.5      /* the rate is measured over the last few seconds */
#define STALE_S 5.0               /* a track not updated for this long is left off the live line */

void cli_format_bytes(uint64_t n, char *out, size_t size) {
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    if (n < 1024) {
        snprintf(out, size, "%llu B", (unsigned long long)n);
        return;
    }
    double v = (double)n / 1024.0;
    size_t u = 0;
    while (v >= 1024.0 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024.0;
        u++;
    }
    snprintf(out, size, v < 10.0 ? "%.2f %s" : v < 100.0 ? "%.1f %s" : "%.0f %s", v, units[u]);
}

void cli_format_duration(double s, char *out, size_t size) {
    if (s < 0) s = 0;
    unsigned long long t = (unsigned long long)(s + 0.5);
    if (t >= 100ULL * 3600) snprintf(out, size, "%llu h", t / 3600);
    else if (t >= 3600) snprintf(out, size, "%llu:%02llu:%02llu", t / 3600, t / 60 % 60, t % 60);
    else snprintf(out, size, "%llu:%02llu", t / 60, t % 60);
}

void cli_progress_init(cli_progress *p, FILE *out, bool live, int columns) {
    memset(p, 0, sizeof *p);
    p->out = out;
    p->live = live && out != NULL;
    p->columns = columns >= 20 ? (columns > CLI_PROGRESS_LINE_MAX ? CLI_PROGRESS_LINE_MAX : columns) : 80;
    p->plain_every_s = CLI_PROGRESS_PLAIN_EVERY_S;
}

static cli_progress_track *find(cli_progress *p, const char *step, bool create) {
    cli_progress_track *free_slot = NULL, *oldest = &p->t[0];
    for (size_t i = 0; i < CLI_PROGRESS_TRACKS; i++) {
        cli_progress_track *t = &p->t[i];
        if (t->used && !strncmp(t->step, step, sizeof t->step - 1)) return t;
        if (!t->used && !free_slot) free_slot = t;
        if (t->used && t->updated < oldest->updated) oldest = t;
    }
    if (!create) return NULL;
    cli_progress_track *t = free_slot ? free_slot : oldest; /* more concurrent steps than slots: reuse */
    memset(t, 0, sizeof *t);
    t->used = true;
    snprintf(t->step, sizeof t->step, "%s", step);
    return t;
}

static const cli_progress_track *find_const(const cli_progress *p, const char *step) {
    return find((cli_progress *)p, step, false);
}

static void add_sample(cli_progress_track *t, double now) {
    size_t last = (t->next + CLI_PROGRESS_SAMPLES - 1) % CLI_PROGRESS_SAMPLES;
    if (t->n_samples && now - t->s_time[last] < SAMPLE_SPACING_S) {
        /* too soon for a new sample: keep the newest one current */
        if (t->n_samples > 1) {
            t->s_time[last] = now;
            t->s_done[last] = t->done;
            t->s_bytes[last] = t->bytes_done;
        }
        return;
    }
    t->s_time[t->next] = now;
    t->s_done[t->next] = t->done;
    t->s_bytes[t->next] = t->bytes_done;
    t->next = (t->next + 1) % CLI_PROGRESS_SAMPLES;
    if (t->n_samples < CLI_PROGRESS_SAMPLES) t->n_samples++;
}

static bool track_complete(const cli_progress_track *t) {
    if (t->bytes_total) return t->bytes_done >= t->bytes_total && (!t->total || t->done >= t->total);
    return t->total && t->done >= t->total;
}

static bool track_rate(const cli_progress_track *t, double now, cli_rate *r) {
    r->bytes_per_s = r->items_per_s = 0;
    r->eta_s = -1;
    if (t->n_samples < 2) return false;
    size_t newest = (t->next + CLI_PROGRESS_SAMPLES - 1) % CLI_PROGRESS_SAMPLES;
    size_t oldest = t->n_samples < CLI_PROGRESS_SAMPLES ? 0 : t->next;
    double span = t->s_time[newest] - t->s_time[oldest];
    if (span < SAMPLE_SPACING_S) return false;
    /* a transfer that stalled since the newest sample counts as slowing down */
    double idle = now - t->s_time[newest];
    if (idle > 0) span += idle;
    r->bytes_per_s = (double)(t->s_bytes[newest] - t->s_bytes[oldest]) / span;
    r->items_per_s = (double)(t->s_done[newest] - t->s_done[oldest]) / span;
    if (t->bytes_total > t->bytes_done && r->bytes_per_s > 0)
        r->eta_s = (double)(t->bytes_total - t->bytes_done) / r->bytes_per_s;
    else if (!t->bytes_total && t->total > t->done && r->items_per_s > 0)
        r->eta_s = (double)(t->total - t->done) / r->items_per_s;
    else if (track_complete(t))
        r->eta_s = 0;
    return true;
}

bool cli_progress_rate(const cli_progress *p, const char *step, double now_s, cli_rate *out) {
    const cli_progress_track *t = find_const(p, step);
    if (!t) {
        out->bytes_per_s = out->items_per_s = 0;
        out->eta_s = -1;
        return false;
    }
    return track_rate(t, now_s, out);
}

/* Appends to out (at most size bytes in all), keeping it NUL-terminated. */
static void append(char *out, size_t size, size_t *len, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void append(char *out, size_t size, size_t *len, const char *fmt, ...) {
    if (*len + 1 >= size) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + *len, size - *len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    *len += (size_t)n < size - *len ? (size_t)n : size - *len - 1;
}

static int percent(const cli_progress_track *t) {
    if (t->bytes_total) return (int)(100.0 * (double)t->bytes_done / (double)t->bytes_total);
    if (t->total) return (int)(100.0 * (double)t->done / (double)t->total);
    return -1;
}

/* "123/500, 45.2 MiB of 270 MiB (16%), 12.3 MiB/s, 0:18 left" (plain) or the same without
 * the words (compact, for the live line). */
static void describe(const cli_progress_track *t, double now, bool compact, char *out, size_t size) {
    size_t len = 0;
    out[0] = 0;
    char a[32], b[32];
    const char *sep = compact ? "  " : ", ";
    bool any = false;
    if (t->total) {
        append(out, size, &len, "%llu/%llu", (unsigned long long)t->done, (unsigned long long)t->total);
        any = true;
    } else if (t->done) {
        append(out, size, &len, "%llu", (unsigned long long)t->done);
        any = true;
    }
    if (t->bytes_done || t->bytes_total) {
        cli_format_bytes(t->bytes_done, a, sizeof a);
        if (t->bytes_total) {
            cli_format_bytes(t->bytes_total, b, sizeof b);
            append(out, size, &len, "%s%s%s%s", any ? sep : "", a, compact ? "/" : " of ", b);
        } else {
            append(out, size, &len, "%s%s", any ? sep : "", a);
        }
        any = true;
    }
    int pc = percent(t);
    if (pc >= 0 && !compact) append(out, size, &len, " (%d%%)", pc);
    cli_rate r;
    if (track_rate(t, now, &r)) {
        if (t->bytes_done || t->bytes_total) {
            cli_format_bytes((uint64_t)r.bytes_per_s, a, sizeof a);
            append(out, size, &len, "%s%s/s", any ? sep : "", a);
        } else {
            append(out, size, &len, "%s%.1f/s", any ? sep : "", r.items_per_s);
        }
        if (r.eta_s > 0) {
            cli_format_duration(r.eta_s, a, sizeof a);
            append(out, size, &len, "%s%s left", sep, a);
        }
    }
}

size_t cli_progress_line(const cli_progress *p, double now_s, char *out, size_t size) {
    size_t len = 0;
    out[0] = 0;
    size_t width = (size_t)p->columns - 1; /* never reach the last column: the line must not wrap */
    if (width >= size) width = size - 1;
    const cli_progress_track *shown[CLI_PROGRESS_TRACKS];
    size_t n = 0;
    for (size_t i = 0; i < CLI_PROGRESS_TRACKS; i++)
        if (p->t[i].used && now_s - p->t[i].updated < STALE_S) shown[n++] = &p->t[i];
    char desc[CLI_PROGRESS_LINE_MAX];
    for (size_t i = 0; i < n; i++) {
        describe(shown[i], now_s, true, desc, sizeof desc);
        append(out, width + 1, &len, "%s%s %s", i ? "  |  " : "    ", shown[i]->step, desc);
    }
    /* one transfer and room to spare: a bar in front of the numbers */
    int pc = n == 1 ? percent(shown[0]) : -1;
    if (pc >= 0 && len + 24 <= width) {
        char bar[CLI_PROGRESS_LINE_MAX];
        size_t blen = 0;
        const int cells = 20;
        int full = pc >= 100 ? cells : pc * cells / 100;
        append(bar, sizeof bar, &blen, "    %s [", shown[0]->step);
        for (int c = 0; c < cells; c++) append(bar, sizeof bar, &blen, "%c", c < full ? '#' : '.');
        append(bar, sizeof bar, &blen, "] %3d%%  ", pc > 100 ? 100 : pc);
        describe(shown[0], now_s, true, desc, sizeof desc);
        append(bar, sizeof bar, &blen, "%s", desc);
        if (blen <= width) {
            memcpy(out, bar, blen + 1);
            len = blen;
        }
    }
    return len;
}

void cli_progress_clear(cli_progress *p) {
    if (!p->live || !p->drawn) return;
    fputs("\r\033[K", p->out);
    fflush(p->out);
    p->drawn = false;
}

void cli_progress_update(cli_progress *p, double now_s, const char *step, uint64_t done, uint64_t total,
                         uint64_t bytes_done, uint64_t bytes_total) {
    cli_progress_track *t = find(p, step, true);
    bool was_complete = t->n_samples && track_complete(t);
    if (done < t->done || bytes_done < t->bytes_done) {
        /* counters went back (the step restarted a transfer): the old samples mean nothing */
        t->n_samples = t->next = 0;
    }
    t->done = done;
    t->total = total;
    t->bytes_done = bytes_done;
    t->bytes_total = bytes_total;
    t->updated = now_s;
    add_sample(t, now_s);
    if (!p->out) return;
    if (p->live) {
        /* at most ten times a second, but the moment a transfer completes is always shown */
        bool completes = track_complete(t) && !was_complete;
        if (now_s - p->last_draw < LIVE_MIN_INTERVAL_S && !completes) return;
        char line[CLI_PROGRESS_LINE_MAX];
        cli_progress_line(p, now_s, line, sizeof line);
        fprintf(p->out, "\r%s\033[K", line);
        fflush(p->out);
        p->drawn = true;
        p->last_draw = now_s;
        return;
    }
    /* plain: the first report after a while, then every plain_every_s, and the completion */
    if (!t->plain_started) {
        t->plain_started = true;
        t->last_plain = now_s;
    }
    bool complete = track_complete(t);
    if (complete ? t->plain_complete : now_s - t->last_plain < p->plain_every_s) return;
    char desc[CLI_PROGRESS_LINE_MAX];
    describe(t, now_s, false, desc, sizeof desc);
    fprintf(p->out, "    %s: %s\n", t->step, desc);
    fflush(p->out);
    t->last_plain = now_s;
    t->plain_complete = complete;
}

void cli_progress_reset(cli_progress *p) {
    cli_progress_clear(p);
    memset(p->t, 0, sizeof p->t);
}
