/* backup_names.c — the strict grammar of names read from a backup directory (backup_names.h).
 * Must never accept a name that is not exactly what pdsmove writes: these checks are what
 * stands between a hostile backup and a path outside it. */
#include "pdsmove/backup_names.h"

#include <stdio.h>
#include <string.h>

#include "pdsmove/cid.h"
#include "pdsmove/syntax.h"

#define STAMP_LEN 16 /* YYYYMMDDTHHMMSSZ */

const char *backup_name_quote(const char *s, char out[BACKUP_NAME_QUOTE_MAX]) {
    size_t o = 0, i = 0;
    for (; s && s[i] && o < BACKUP_NAME_QUOTE_MAX - 4; i++) {
        unsigned char c = (unsigned char)s[i];
        out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (s && s[i]) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = 0;
    return out;
}

static bool bad(err_t *e, const char *what, const char *s, const char *rule) {
    char q[BACKUP_NAME_QUOTE_MAX];
    err_set(e, ERR_INVALID, "%s '%s' %s", what, backup_name_quote(s, q), rule);
    return false;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static bool digits(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!is_digit(s[i])) return false;
    return true;
}

/* the characters of a DID's method-specific id, ':' already turned into '_' */
static bool id_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' || c == '_' || c == '%' || c == '-';
}

bool backup_name_did_prefix(const char *did, char *out, size_t size) {
    size_t n = strlen(did);
    if (n + 1 > size) return false;
    for (size_t i = 0; i <= n; i++) out[i] = did[i] == ':' ? '_' : did[i];
    return true;
}

static bool stamp_ok(const char *t) {
    if (!digits(t, 8) || t[8] != 'T' || !digits(t + 9, 6) || t[15] != 'Z') return false;
    int mo = (t[4] - '0') * 10 + (t[5] - '0'), d = (t[6] - '0') * 10 + (t[7] - '0');
    int h = (t[9] - '0') * 10 + (t[10] - '0'), mi = (t[11] - '0') * 10 + (t[12] - '0'), se = (t[13] - '0') * 10 + (t[14] - '0');
    return mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h <= 23 && mi <= 59 && se <= 60;
}

bool backup_name_snapshot_id(const char *id, const char *did, err_t *e) {
    const char *what = "snapshot id";
    if (!id || !id[0]) return bad(e, what, "", "is empty");
    size_t n = strlen(id);
    if (n >= BACKUP_NAME_ID_MAX) return bad(e, what, id, "is too long");
    /* from the end: an optional run number ("-02".."-99"; "-2".."-100" from pdsmove before
     * 0.1), then "-YYYYMMDDTHHMMSSZ" */
    size_t end = n;
    for (size_t k = 1; k <= 3; k++)
        if (n > k + 1 && id[n - k - 1] == '-' && digits(id + n - k, k) && id[n - k - 2] == 'Z') {
            int nn = 0;
            for (size_t i = n - k; i < n; i++) nn = nn * 10 + (id[i] - '0');
            if (nn < 2 || nn > 100 || (k == 3 && id[n - 3] == '0'))
                return bad(e, what, id, "has a run number outside 02..99");
            end = n - k - 1;
            break;
        }
    if (end < STAMP_LEN + 1 || id[end - STAMP_LEN - 1] != '-' || !stamp_ok(id + end - STAMP_LEN))
        return bad(e, what, id, "does not end in -YYYYMMDDTHHMMSSZ[-NN] (the UTC time of the backup)");
    size_t plen = end - STAMP_LEN - 1;
    if (did) {
        char want[BACKUP_NAME_ID_MAX];
        if (!syntax_did(did, NULL)) return bad(e, "DID", did, "is not a valid DID");
        if (!backup_name_did_prefix(did, want, sizeof want) || strlen(want) != plen || strncmp(want, id, plen))
            return bad(e, what, id, "does not belong to its DID");
        return true;
    }
    /* "did_" method "_" id chars */
    if (plen < 6 || strncmp(id, "did_", 4)) return bad(e, what, id, "does not start with did_<method>_");
    size_t i = 4;
    while (i < plen && id[i] >= 'a' && id[i] <= 'z') i++;
    if (i == 4 || i >= plen - 1 || id[i] != '_') return bad(e, what, id, "does not start with did_<method>_");
    for (i++; i < plen; i++)
        if (!id_char(id[i])) return bad(e, what, id, "holds a character a DID cannot have");
    return true;
}

bool backup_name_archive(const char *name, err_t *e) {
    const char *what = "archive name";
    if (!name || !name[0]) return bad(e, what, "", "is empty");
    size_t n = strlen(name);
    if (n > BACKUP_NAME_ARCHIVE_MAX) return bad(e, what, name, "is too long");
    if (name[0] == '.') return bad(e, what, name, "starts with '.'");
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' || c == '_' || c == '%' || c == '-'))
            return bad(e, what, name, "is not a plain file name");
    }
    if (!((n > 8 && !strcmp(name + n - 8, ".tar.zst")) || (n > 7 && !strcmp(name + n - 7, ".tar.gz"))))
        return bad(e, what, name, "does not end in .tar.zst or .tar.gz");
    return true;
}

bool backup_name_cid(const char *s, bool blob, err_t *e) {
    const char *what = blob ? "blob CID" : "CID";
    if (!s || !s[0]) return bad(e, what, "", "is empty");
    if (strlen(s) >= CID_STR_MAX) return bad(e, what, s, "is too long");
    cid_t c;
    char back[CID_STR_MAX];
    if (cid_parse(&c, s, NULL) != ERR_OK) return bad(e, what, s, "does not parse as a CID");
    if (cid_format(&c, back, sizeof back) == 0 || strcmp(back, s))
        return bad(e, what, s, "is not in its canonical form (CIDv1, base32 lower case)");
    if (blob && c.codec != CID_CODEC_RAW) return bad(e, what, s, "is not a raw-codec CID (what blobs are)");
    return true;
}
