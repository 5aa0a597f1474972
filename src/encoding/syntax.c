/* syntax.c — atproto identifier syntax checks (see syntax.h), written from the atproto specs
 * and checked against the interop fixtures. Every validator scans at most its length limit
 * (+1) of the input, so an unterminated or huge string costs no more than that. */
#include "pdsmove/syntax.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- helpers */

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_alnum(char c) { return is_alpha(c) || is_digit(c); }

/* A printable, bounded copy of the input for error messages. */
static void preview(const char *s, size_t n, char out[72]) {
    size_t max = 60, o = 0;
    for (size_t i = 0; i < n && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (n > max) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = 0;
}

static bool fail(err_t *e, err_code code, const char *kind, const char *s, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static bool fail(err_t *e, err_code code, const char *kind, const char *s, size_t n, const char *fmt, ...) {
    if (!e) return false;
    char why[256], pv[72];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    preview(s, n, pv);
    err_set(e, code, "invalid %s \"%s\": %s", kind, pv, why);
    return false;
}

/* Length of s, but never looks past max+1 bytes (enough to know it is too long). */
static size_t bounded_len(const char *s, size_t max) { return strnlen(s, max + 1); }

static size_t find_char(const char *s, size_t n, char c, size_t from) {
    for (size_t i = from; i < n; i++)
        if (s[i] == c) return i;
    return n;
}

/* ---------------------------------------------------------------- DID */

static bool did_n(const char *s, size_t n, err_t *e) {
    static const char K[] = "DID";
    if (n > SYNTAX_DID_MAX) return fail(e, ERR_LIMIT, K, s, n, "longer than %d characters", SYNTAX_DID_MAX);
    if (n < 4 || memcmp(s, "did:", 4) != 0) return fail(e, ERR_INVALID, K, s, n, "must start with lower-case \"did:\"");
    size_t colon = find_char(s, n, ':', 4);
    if (colon == n) return fail(e, ERR_INVALID, K, s, n, "needs \"did:<method>:<identifier>\"");
    if (colon == 4) return fail(e, ERR_INVALID, K, s, n, "empty method name");
    for (size_t i = 4; i < colon; i++)
        if (s[i] < 'a' || s[i] > 'z') return fail(e, ERR_INVALID, K, s, n, "method name must be lower-case letters a-z only");
    if (colon + 1 == n) return fail(e, ERR_INVALID, K, s, n, "empty method-specific identifier");
    for (size_t i = colon + 1; i < n; i++) {
        char c = s[i];
        if (!(is_alnum(c) || c == '.' || c == '_' || c == ':' || c == '%' || c == '-'))
            return fail(e, ERR_INVALID, K, s, n, "character at offset %zu not allowed (letters, digits and ._:%%- only)", i);
    }
    if (s[n - 1] == ':' || s[n - 1] == '%') return fail(e, ERR_INVALID, K, s, n, "must not end with ':' or '%%'");
    return true;
}

bool syntax_did(const char *s, err_t *e) { return did_n(s, bounded_len(s, SYNTAX_DID_MAX), e); }

/* ---------------------------------------------------------------- handle */

static bool handle_n(const char *s, size_t n, err_t *e) {
    static const char K[] = "handle";
    if (n > SYNTAX_HANDLE_MAX) return fail(e, ERR_LIMIT, K, s, n, "longer than %d characters", SYNTAX_HANDLE_MAX);
    if (n == 0) return fail(e, ERR_INVALID, K, s, n, "empty");
    size_t labels = 0, start = 0;
    while (start <= n) {
        size_t end = find_char(s, n, '.', start);
        size_t len = end - start;
        labels++;
        if (len == 0) return fail(e, ERR_INVALID, K, s, n, "empty label at offset %zu (leading, trailing or double dot)", start);
        if (len > 63) return fail(e, ERR_INVALID, K, s, n, "label at offset %zu is longer than 63 characters", start);
        for (size_t i = start; i < end; i++)
            if (!is_alnum(s[i]) && s[i] != '-')
                return fail(e, ERR_INVALID, K, s, n, "character at offset %zu not allowed (ASCII letters, digits, '-' and '.' only)", i);
        if (s[start] == '-' || s[end - 1] == '-')
            return fail(e, ERR_INVALID, K, s, n, "label at offset %zu starts or ends with '-'", start);
        if (end == n) {
            if (labels < 2) return fail(e, ERR_INVALID, K, s, n, "needs at least two labels (a domain name)");
            if (!is_alpha(s[start])) return fail(e, ERR_INVALID, K, s, n, "top-level label must start with a letter");
        }
        start = end + 1;
    }
    return true;
}

bool syntax_handle(const char *s, err_t *e) { return handle_n(s, bounded_len(s, SYNTAX_HANDLE_MAX), e); }

/* ---------------------------------------------------------------- NSID */

static bool nsid_n(const char *s, size_t n, err_t *e) {
    static const char K[] = "NSID";
    if (n > SYNTAX_NSID_MAX) return fail(e, ERR_LIMIT, K, s, n, "longer than %d characters", SYNTAX_NSID_MAX);
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '.')
            return fail(e, ERR_INVALID, K, s, n, "character at offset %zu not allowed (ASCII letters, digits, '-' and '.' only)", i);
    size_t segs = 0, start = 0;
    while (start <= n) {
        size_t end = find_char(s, n, '.', start);
        size_t len = end - start;
        if (len == 0) return fail(e, ERR_INVALID, K, s, n, "empty segment at offset %zu", start);
        if (len > 63) return fail(e, ERR_INVALID, K, s, n, "segment at offset %zu is longer than 63 characters", start);
        if (s[start] == '-' || s[end - 1] == '-')
            return fail(e, ERR_INVALID, K, s, n, "segment at offset %zu starts or ends with '-'", start);
        if (segs == 0 && !is_alpha(s[start])) return fail(e, ERR_INVALID, K, s, n, "first segment must start with a letter");
        segs++;
        if (end == n) {
            if (segs < 3) return fail(e, ERR_INVALID, K, s, n, "needs at least three segments (reversed domain + name)");
            if (!is_alpha(s[start])) return fail(e, ERR_INVALID, K, s, n, "name segment must start with a letter");
            for (size_t i = start; i < end; i++)
                if (s[i] == '-') return fail(e, ERR_INVALID, K, s, n, "name segment must be letters and digits only");
        }
        start = end + 1;
    }
    return true;
}

bool syntax_nsid(const char *s, err_t *e) { return nsid_n(s, bounded_len(s, SYNTAX_NSID_MAX), e); }

/* ---------------------------------------------------------------- TID */

static bool tid_char(char c) { return (c >= '2' && c <= '7') || (c >= 'a' && c <= 'z'); }

bool syntax_tid(const char *s, err_t *e) {
    static const char K[] = "TID";
    size_t n = bounded_len(s, SYNTAX_TID_LEN);
    if (n != SYNTAX_TID_LEN) return fail(e, ERR_INVALID, K, s, n, "must be exactly %d characters", SYNTAX_TID_LEN);
    for (size_t i = 0; i < n; i++)
        if (!tid_char(s[i])) return fail(e, ERR_INVALID, K, s, n, "character at offset %zu is not base32-sortable (2-7, a-z)", i);
    /* The top bit of the 64-bit value is always 0: first character in 2-7 or a-j. */
    if (!((s[0] >= '2' && s[0] <= '7') || (s[0] >= 'a' && s[0] <= 'j')))
        return fail(e, ERR_INVALID, K, s, n, "first character must be 2-7 or a-j (high bit must be zero)");
    return true;
}

/* ---------------------------------------------------------------- record key */

static bool rkey_n(const char *s, size_t n, err_t *e) {
    static const char K[] = "record key";
    if (n > SYNTAX_RKEY_MAX) return fail(e, ERR_LIMIT, K, s, n, "longer than %d characters", SYNTAX_RKEY_MAX);
    if (n == 0) return fail(e, ERR_INVALID, K, s, n, "empty");
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!(is_alnum(c) || c == '.' || c == '-' || c == '_' || c == ':' || c == '~'))
            return fail(e, ERR_INVALID, K, s, n, "character at offset %zu not allowed (letters, digits and .-_:~ only)", i);
    }
    if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
        return fail(e, ERR_INVALID, K, s, n, "\".\" and \"..\" are not allowed");
    return true;
}

bool syntax_record_key(const char *s, err_t *e) { return rkey_n(s, bounded_len(s, SYNTAX_RKEY_MAX), e); }

/* ---------------------------------------------------------------- at-identifier */

static bool at_identifier_n(const char *s, size_t n, err_t *e) {
    if (n >= 4 && memcmp(s, "did:", 4) == 0) return did_n(s, n, e);
    return handle_n(s, n, e);
}

bool syntax_at_identifier(const char *s, err_t *e) {
    return at_identifier_n(s, bounded_len(s, SYNTAX_DID_MAX), e);
}

/* ---------------------------------------------------------------- AT URI */

static void wrap_uri(err_t *e, const char *s, size_t n, const char *part) {
    if (!e) return;
    char pv[72];
    preview(s, n, pv);
    err_wrap(e, "AT URI \"%s\" %s", pv, part);
}

bool syntax_at_uri(const char *s, err_t *e) {
    static const char K[] = "AT URI";
    size_t n = bounded_len(s, SYNTAX_AT_URI_MAX);
    if (n > SYNTAX_AT_URI_MAX) return fail(e, ERR_LIMIT, K, s, n, "longer than %d characters", SYNTAX_AT_URI_MAX);
    if (n < 5 || memcmp(s, "at://", 5) != 0) return fail(e, ERR_INVALID, K, s, n, "must start with \"at://\"");
    for (size_t i = 0; i < n; i++)
        if (s[i] == '#' || s[i] == '?')
            return fail(e, ERR_INVALID, K, s, n, "query and fragment parts are not allowed (offset %zu)", i);
    size_t a0 = 5, a1 = find_char(s, n, '/', a0);
    if (a1 == a0) return fail(e, ERR_INVALID, K, s, n, "empty authority");
    if (!at_identifier_n(s + a0, a1 - a0, e)) {
        wrap_uri(e, s, n, "authority");
        return false;
    }
    if (a1 == n) return true;
    size_t c0 = a1 + 1, c1 = find_char(s, n, '/', c0);
    if (c1 == c0) return fail(e, ERR_INVALID, K, s, n, "empty collection after the authority (no trailing or double slash)");
    if (!nsid_n(s + c0, c1 - c0, e)) {
        wrap_uri(e, s, n, "collection");
        return false;
    }
    if (c1 == n) return true;
    size_t r0 = c1 + 1, r1 = find_char(s, n, '/', r0);
    if (r1 == r0) return fail(e, ERR_INVALID, K, s, n, "empty record key after the collection (no trailing slash)");
    if (!rkey_n(s + r0, r1 - r0, e)) {
        wrap_uri(e, s, n, "record key");
        return false;
    }
    if (r1 != n) return fail(e, ERR_INVALID, K, s, n, "path has more than collection and record key");
    return true;
}

/* ---------------------------------------------------------------- datetime */

/* Two digits at s[0..1] as a number, or -1. */
static int two_digits(const char *s) {
    if (!is_digit(s[0]) || !is_digit(s[1])) return -1;
    return (s[0] - '0') * 10 + (s[1] - '0');
}

static bool is_leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

static int days_in_month(int y, int m) {
    static const int d[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : d[m - 1];
}

bool syntax_datetime(const char *s, err_t *e) {
    static const char K[] = "datetime";
    size_t n = bounded_len(s, SYNTAX_DATETIME_MAX);
    if (n > SYNTAX_DATETIME_MAX) return fail(e, ERR_LIMIT, K, s, n, "longer than %d characters", SYNTAX_DATETIME_MAX);
    /* Shortest form: YYYY-MM-DDTHH:MM:SSZ */
    if (n < 20) return fail(e, ERR_INVALID, K, s, n, "too short for YYYY-MM-DDTHH:MM:SS plus a timezone");
    for (int i = 0; i < 4; i++)
        if (!is_digit(s[i])) return fail(e, ERR_INVALID, K, s, n, "year must be exactly four digits");
    int year = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
        return fail(e, ERR_INVALID, K, s, n, "must have the form YYYY-MM-DDTHH:MM:SS (upper-case 'T')");
    int month = two_digits(s + 5), day = two_digits(s + 8);
    int hour = two_digits(s + 11), minute = two_digits(s + 14), second = two_digits(s + 17);
    if (month < 1 || month > 12) return fail(e, ERR_INVALID, K, s, n, "month must be 01-12");
    if (day < 1 || day > days_in_month(year, month)) return fail(e, ERR_INVALID, K, s, n, "day is not in the month");
    if (hour < 0 || hour > 23) return fail(e, ERR_INVALID, K, s, n, "hour must be 00-23");
    if (minute < 0 || minute > 59) return fail(e, ERR_INVALID, K, s, n, "minute must be 00-59");
    if (second < 0 || second > 59) return fail(e, ERR_INVALID, K, s, n, "second must be 00-59");
    size_t p = 19;
    if (s[p] == '.') {
        size_t f0 = ++p;
        while (p < n && is_digit(s[p])) p++;
        if (p == f0) return fail(e, ERR_INVALID, K, s, n, "fraction of a second needs at least one digit");
    }
    int offset_min = 0;
    if (p < n && s[p] == 'Z') {
        if (p + 1 != n) return fail(e, ERR_INVALID, K, s, n, "unexpected characters after 'Z'");
    } else if (p < n && (s[p] == '+' || s[p] == '-')) {
        if (n - p != 6 || s[p + 3] != ':') return fail(e, ERR_INVALID, K, s, n, "timezone offset must be +HH:MM or -HH:MM");
        int oh = two_digits(s + p + 1), om = two_digits(s + p + 4);
        if (oh < 0 || oh > 23 || om < 0 || om > 59) return fail(e, ERR_INVALID, K, s, n, "timezone offset out of range");
        if (s[p] == '-' && oh == 0 && om == 0) return fail(e, ERR_INVALID, K, s, n, "\"-00:00\" is not allowed for UTC (use 'Z' or +00:00)");
        offset_min = (s[p] == '+' ? 1 : -1) * (oh * 60 + om);
    } else {
        return fail(e, ERR_INVALID, K, s, n, "timezone is required ('Z' or +HH:MM/-HH:MM)");
    }
    /* In UTC the instant must still fall within years 0000-9999. */
    int local_min = hour * 60 + minute;
    if (year == 0 && month == 1 && day == 1 && local_min - offset_min < 0)
        return fail(e, ERR_INVALID, K, s, n, "falls before year 0000 in UTC");
    if (year == 9999 && month == 12 && day == 31 && local_min - offset_min >= 24 * 60)
        return fail(e, ERR_INVALID, K, s, n, "falls after year 9999 in UTC");
    return true;
}

/* ---------------------------------------------------------------- CID (string form) */

bool syntax_cid(const char *s, err_t *e) {
    static const char K[] = "CID";
    size_t n = bounded_len(s, SYNTAX_CID_MAX);
    if (n > SYNTAX_CID_MAX) return fail(e, ERR_LIMIT, K, s, n, "longer than %d characters", SYNTAX_CID_MAX);
    if (n < SYNTAX_CID_MIN) return fail(e, ERR_INVALID, K, s, n, "shorter than %d characters", SYNTAX_CID_MIN);
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(s[i]) && s[i] != '+' && s[i] != '=')
            return fail(e, ERR_INVALID, K, s, n, "character at offset %zu not allowed (letters, digits, '+' and '=' only)", i);
    if (memcmp(s, "Qmb", 3) == 0) return fail(e, ERR_INVALID, K, s, n, "CIDv0 is not allowed");
    return true;
}
