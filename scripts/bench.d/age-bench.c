/* age-bench.c — the driver scripts/bench-age times: pdsmove's age module, fd to fd, the way
 * backups will use it. `age-bench encrypt RECIPIENT IN OUT` / `age-bench decrypt IDENTITY_FILE
 * IN OUT`. Not part of pdsmove; built by scripts/bench-age. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pdsmove/age.h"

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: age-bench encrypt RECIPIENT IN OUT | decrypt IDENTITY_FILE IN OUT\n");
        return 2;
    }
    int in = open(argv[3], O_RDONLY), out = open(argv[4], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (in < 0 || out < 0) {
        perror("open");
        return 1;
    }
    err_t e = {0};
    err_code rc;
    if (!strcmp(argv[1], "encrypt")) {
        age_recipient r;
        if ((rc = age_recipient_parse(argv[2], strlen(argv[2]), &r, &e)) == ERR_OK) {
            age_enc_opts o = {.recipients = &r, .n_recipients = 1};
            rc = age_encrypt_fd(&o, in, out, &e);
        }
    } else {
        age_identity ids[AGE_MAX_IDENTITIES];
        size_t n;
        if ((rc = age_identities_load_file(argv[2], ids, AGE_MAX_IDENTITIES, &n, NULL, &e)) == ERR_OK) {
            age_dec_opts o = {.identities = ids, .n_identities = n};
            rc = age_decrypt_fd(&o, in, out, &e);
        }
    }
    if (rc != ERR_OK) {
        fprintf(stderr, "age-bench: %s\n", e.msg);
        return 1;
    }
    return close(out) == 0 ? 0 : 1;
}
