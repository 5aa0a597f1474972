/* cli_bytes.c — sizes on the command line ("4G", "500M", "1048576"): binary units, because
 * the limits they set (CURLOPT_MAXFILESIZE_LARGE, file sizes on disk) count bytes. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <strings.h>

#include "cli.h"

bool cli_parse_bytes(const char *s, uint64_t *out) {
    if (!s || !isdigit((unsigned char)s[0])) return false;
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(s, &end, 10);
    if (errno || end == s) return false;
    static const struct { const char *suffix; int shift; } units[] = {
        {"", 0}, {"B", 0}, {"K", 10}, {"KiB", 10}, {"M", 20}, {"MiB", 20}, {"G", 30}, {"GiB", 30}, {"T", 40}, {"TiB", 40}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(end, units[i].suffix)) continue;
        if (n == 0 || n > (UINT64_MAX >> units[i].shift)) return false;
        *out = (uint64_t)n << units[i].shift;
        return true;
    }
    return false;
}
