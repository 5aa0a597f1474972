/* cmd_key.c — `pdsmove key generate|show`: make a signing/rotation key file and show the
 * public did:key of one. The private key goes only into a new 0600 file (never overwritten,
 * never printed); everything else is in the keys module. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cli.h"
#include "pdsmove/age.h"
#include "pdsmove/keys.h"

static const char key_usage[] =
    "usage: pdsmove key <command> [options]\n"
    "\n"
    "Private keys for signing PLC operations yourself (a rotation key in your DID's\n"
    "rotationKeys lets you move or recover the account without the old PDS).\n"
    "\n"
    "commands:\n"
    "  generate [--type k256|p256|age] --out FILE   make a new key; print its did:key\n"
    "                                               (age: its age1… recipient)\n"
    "  show FILE                                    print a key file's type and public key\n"
    "\n"
    "Run `pdsmove key <command> --help` for details.\n";

static const char generate_usage[] =
    "usage: pdsmove key generate [--type k256|p256|age] --out FILE\n"
    "\n"
    "Makes a new private key from the system's random generator and writes it to FILE as\n"
    "one line (a multikey, \"z...\"), readable only by you (mode 0600). FILE must not exist:\n"
    "pdsmove never overwrites a key file. Prints the public did:key (add it to your DID's\n"
    "rotationKeys); the private key itself is never printed.\n"
    "\n"
    "options:\n"
    "  --type k256|p256|age\n"
    "                     k256 (secp256k1, the default; what PDS rotation keys use),\n"
    "                     p256 (NIST P-256), or age: an age X25519 identity for encrypted\n"
    "                     backups, written as `age-keygen` writes it (AGE-SECRET-KEY-1…);\n"
    "                     prints its recipient (age1…); `age -d -i FILE` opens what is\n"
    "                     encrypted to it\n"
    "  --out FILE         the new key file to create (required)\n"
    "  -h, --help         show this help\n";

static const char show_usage[] =
    "usage: pdsmove key show FILE\n"
    "\n"
    "An age identity file (AGE-SECRET-KEY-1…, as `age-keygen` or `key generate --type age`\n"
    "write it): prints its recipients (age1…); refused if other users can read or change it.\n"
    "\n"
    "Prints the type and public did:key of the private key in FILE. FILE holds one line:\n"
    "a private multikey (\"z...\", as written by `pdsmove key generate`), or 64 hex characters\n"
    "(a k256 key, the PDS's PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX format), or\n"
    "\"p256:\" followed by 64 hex characters. Refused if other users can read or change FILE\n"
    "(run `chmod 600 FILE`).\n"
    "\n"
    "options:\n"
    "  -h, --help   show this help\n";

static int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const char *cmd, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cli_errorf("%s (see `pdsmove key%s%s --help`)", msg, cmd[0] ? " " : "", cmd);
    return EXIT_USAGE;
}

/* Prints the public half; returns EXIT_FAIL if stdout cannot be written. */
static int print_public(const key_priv *k) {
    char did[KEY_DID_MAX];
    if (key_pub_to_did_key(&k->pub, did, sizeof did) == 0) {
        cli_errorf("cannot encode the did:key (internal error)");
        return EXIT_FAIL;
    }
    printf("type:    %s\ndid:key: %s\n", key_type_name(k->type), did);
    return EXIT_OK_;
}

/* Writes line to a new file at path, mode 0600. Never replaces an existing file (or follows
 * a symlink); removes a half-written file. */
static int write_new_key_file(const char *path, const char *line, size_t len) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            cli_errorf("%s already exists; refusing to overwrite a key file (choose another --out, or move the old file away yourself)", path);
        else
            cli_errorf("cannot create key file %s: %s", path, strerror(errno));
        return EXIT_FAIL;
    }
    const char *failed = NULL;
    int saved = 0;
    /* open()'s mode is filtered by the umask; make 0600 exact rather than hope. */
    if (fchmod(fd, 0600) != 0) failed = "setting mode 0600 on", saved = errno;
    size_t off = 0;
    while (!failed && off < len) {
        ssize_t w = write(fd, line + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) failed = "writing", saved = w < 0 ? errno : EIO;
        else off += (size_t)w;
    }
    if (!failed && fsync(fd) != 0) failed = "syncing", saved = errno;
    if (close(fd) != 0 && !failed) failed = "closing", saved = errno;
    if (failed) {
        unlink(path);
        cli_errorf("%s key file %s: %s (the file was removed)", failed, path, strerror(saved));
        return EXIT_FAIL;
    }
    return EXIT_OK_;
}

/* Value of --name VALUE or --name=VALUE at argv[*i]; NULL when argv[*i] is another option.
 * Sets *missing when the option is there but its value is not. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, bool *missing) {
    size_t n = strlen(name);
    const char *a = argv[*i];
    *missing = false;
    if (strncmp(a, name, n) != 0) return NULL;
    if (a[n] == '=') return a + n + 1;
    if (a[n] != 0) return NULL;
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    return argv[++*i];
}

/* An age identity file exactly as age-keygen writes it (created/public key comments). */
static int age_generate(const char *out) {
    err_t e = {0};
    age_identity id;
    if (age_identity_generate(&id, &e) != ERR_OK) {
        cli_error(&e);
        return EXIT_FAIL;
    }
    age_recipient r;
    age_identity_to_recipient(&id, &r);
    char rs[AGE_RECIPIENT_CHARS + 1], sk[AGE_IDENTITY_CHARS + 1], when[32], text[256];
    time_t now = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    int n = -1;
    if (age_recipient_format(&r, rs, sizeof rs) != 0 && age_identity_format(&id, sk, sizeof sk) != 0)
        n = snprintf(text, sizeof text, "# created: %s\n# public key: %s\n%s\n", when, rs, sk);
    age_identity_wipe(&id);
    OPENSSL_cleanse(sk, sizeof sk);
    int rc = EXIT_FAIL;
    if (n <= 0 || (size_t)n >= sizeof text) cli_errorf("cannot encode the age identity (internal error)");
    else rc = write_new_key_file(out, text, (size_t)n);
    OPENSSL_cleanse(text, sizeof text);
    if (rc != EXIT_OK_) return rc;
    printf("type:      age (X25519)\nrecipient: %s\n", rs);
    printf("wrote the age identity to %s (mode 0600)\n"
           "hint: keep %s secret and backed up offline; without it, backups encrypted to %s cannot be read\n",
           out, out, rs);
    return EXIT_OK_;
}

/* `key show` of an age identity file: its recipients. -1 when path is not one. */
static int age_show(const char *path) {
    age_identity ids[AGE_MAX_IDENTITIES];
    size_t n = 0;
    bool insecure = false;
    err_t e = {0};
    if (age_identities_load_file(path, ids, AGE_MAX_IDENTITIES, &n, &insecure, &e) != ERR_OK) return -1;
    if (insecure) { /* as for every private key file: a warning is not enough */
        OPENSSL_cleanse(ids, sizeof ids);
        cli_errorf("%s can be read or changed by other users; run `chmod 600 %s` first", path, path);
        return EXIT_FAIL;
    }
    for (size_t i = 0; i < n; i++) {
        age_recipient r;
        char rs[AGE_RECIPIENT_CHARS + 1];
        age_identity_to_recipient(&ids[i], &r);
        age_recipient_format(&r, rs, sizeof rs);
        printf("type:      age (X25519)\nrecipient: %s\n", rs);
    }
    OPENSSL_cleanse(ids, sizeof ids);
    return EXIT_OK_;
}

static int key_generate(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(generate_usage, stdout);
        return EXIT_OK_;
    }
    const char *type_s = "k256", *out = NULL;
    for (int i = 1; i < argc; i++) {
        bool missing;
        const char *v;
        if ((v = opt_value(argc, argv, &i, "--type", &missing)) != NULL) type_s = v;
        else if (missing) return usage_error("generate", "--type needs a value (k256 or p256)");
        else if ((v = opt_value(argc, argv, &i, "--out", &missing)) != NULL) out = v;
        else if (missing) return usage_error("generate", "--out needs a file name");
        else if (argv[i][0] == '-') return usage_error("generate", "unknown option '%s'", argv[i]);
        else return usage_error("generate", "unexpected argument '%s'", argv[i]);
    }
    key_type type;
    bool age = !strcmp(type_s, "age");
    if (!age && !key_type_parse(type_s, &type))
        return usage_error("generate", "unknown key type '%s' (expected k256, p256 or age)", type_s);
    if (out == NULL) return usage_error("generate", "--out FILE is required: where to write the new private key");
    if (out[0] == 0) return usage_error("generate", "--out needs a file name");
    if (!strcmp(out, "-")) return usage_error("generate", "a private key is never written to stdout; give --out a file name");
    if (age) return age_generate(out);

    err_t e = {0};
    key_priv k;
    if (key_priv_generate(&k, type, &e) != ERR_OK) {
        cli_error(&e);
        return EXIT_FAIL;
    }
    char line[128];
    size_t n = key_priv_to_multikey(&k, line, sizeof line - 1);
    int rc = EXIT_FAIL;
    if (n == 0) {
        cli_errorf("cannot encode the private key (internal error)");
    } else {
        line[n++] = '\n';
        rc = write_new_key_file(out, line, n);
    }
    explicit_bzero(line, sizeof line);
    if (rc == EXIT_OK_) rc = print_public(&k);
    key_priv_wipe(&k);
    if (rc != EXIT_OK_) return rc;
    printf("wrote the private key to %s (mode 0600)\n"
           "hint: keep %s secret and backed up offline; whoever holds it can sign as this key "
           "(and, as a rotation key, take over your DID)\n",
           out, out);
    return EXIT_OK_;
}

static int key_show(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(show_usage, stdout);
        return EXIT_OK_;
    }
    const char *path = NULL;
    bool options = true; /* until "--" */
    for (int i = 1; i < argc; i++) {
        if (options && !strcmp(argv[i], "--")) {
            options = false;
            continue;
        }
        if (options && argv[i][0] == '-' && argv[i][1] != 0) return usage_error("show", "unknown option '%s'", argv[i]);
        if (path != NULL) return usage_error("show", "unexpected argument '%s' (show takes one FILE)", argv[i]);
        path = argv[i];
    }
    if (path == NULL) return usage_error("show", "missing FILE: the key file to show");

    int age_rc = age_show(path);
    if (age_rc >= 0) return age_rc;
    err_t e = {0};
    key_priv k;
    if (key_priv_load_file(&k, path, &e) != ERR_OK) {
        cli_error(&e);
        return EXIT_FAIL;
    }
    int rc = print_public(&k);
    key_priv_wipe(&k);
    return rc;
}

int cmd_key(int argc, char **argv) {
    if (argc < 2) {
        fputs(key_usage, stderr);
        return EXIT_USAGE;
    }
    const char *sub = argv[1];
    int rc;
    if (!strcmp(sub, "-h") || !strcmp(sub, "--help") || !strcmp(sub, "help")) {
        fputs(key_usage, stdout);
        rc = EXIT_OK_;
    } else if (!strcmp(sub, "generate")) {
        rc = key_generate(argc - 1, argv + 1);
    } else if (!strcmp(sub, "show")) {
        rc = key_show(argc - 1, argv + 1);
    } else {
        return usage_error("", "unknown key command '%s' (expected generate or show)", sub);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        cli_errorf("writing to standard output: %s", strerror(errno));
        return EXIT_FAIL;
    }
    return rc;
}
