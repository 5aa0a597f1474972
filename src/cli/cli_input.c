/* cli_input.c — how the CLI obtains secrets and answers: files (for systemd/NixOS secret
 * paths), environment variables, or a terminal prompt without echo. Never argv; nothing
 * read here is ever printed. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "pdsmove/secure.h"

static void chomp(char *s) { s[strcspn(s, "\r\n")] = 0; }

bool cli_secret_from_file(const char *path, char *out, size_t size, err_t *e) {
    FILE *f = fopen(path, "r");
    if (!f) {
        err_set(e, ERR_IO, "cannot read %s: %s", path, strerror(errno));
        return false;
    }
    /* checked on the open file, not the name: what is read is what was checked */
    if (secure_check_private_fd(fileno(f), path, "secret file", e) != ERR_OK) {
        fclose(f);
        return false;
    }
    out[0] = 0;
    setvbuf(f, NULL, _IONBF, 0); /* no stdio buffer left holding a copy of the secret */
    bool got = fgets(out, (int)size, f) != NULL;
    fclose(f);
    if (got) chomp(out);
    if (!got || !out[0]) {
        err_set(e, ERR_USAGE, "%s is empty", path);
        return false;
    }
    return true;
}

#define BYPASS_FILE_MAX 65536

/* The value of the last `[export ]PDS_RATE_LIMIT_BYPASS_KEY=...` line of text (quotes
 * dropped), or the text itself when it is one line without '='. */
static bool bypass_key_in(char *text, char *out, size_t size, bool *has_assignments) {
    static const char name[] = "PDS_RATE_LIMIT_BYPASS_KEY=";
    bool found = false;
    size_t lines = 0;
    const char *only = NULL; /* the one line that is not blank or a comment */
    *has_assignments = false;
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        chomp(line);
        while (*line == ' ' || *line == '\t') line++;
        if (!*line || *line == '#') continue;
        lines++;
        only = line;
        if (strchr(line, '=')) *has_assignments = true;
        if (!strncmp(line, "export ", 7)) line += 7;
        if (strncmp(line, name, sizeof name - 1)) continue;
        char *v = line + sizeof name - 1;
        size_t vl = strlen(v);
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) v[--vl] = 0;
        if (vl >= 2 && (v[0] == '"' || v[0] == '\'') && v[vl - 1] == v[0]) {
            v[vl - 1] = 0;
            v++;
        }
        snprintf(out, size, "%s", v);
        found = strlen(v) < size;
    }
    if (!found && lines == 1 && !*has_assignments) {
        size_t vl = strlen(only);
        while (vl && (only[vl - 1] == ' ' || only[vl - 1] == '\t')) vl--;
        if (vl < size) {
            memcpy(out, only, vl);
            out[vl] = 0;
            found = true;
        }
    }
    return found;
}

bool cli_bypass_key_from_file(const char *path, char *out, size_t size, err_t *e) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        err_set(e, ERR_IO, "cannot read %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return false;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > BYPASS_FILE_MAX) {
        close(fd);
        err_set(e, ERR_USAGE, "%s is not a small regular file: give the file holding the bypass key", path);
        return false;
    }
    /* checked on the open file, like every secret file (secure.c) */
    if (secure_check_private_fd(fd, path, "bypass key file", e) != ERR_OK) {
        close(fd);
        return false;
    }
    char *text = calloc(1, BYPASS_FILE_MAX + 1);
    if (!text) {
        close(fd);
        err_set(e, ERR_NOMEM, "out of memory");
        return false;
    }
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, text + len, BYPASS_FILE_MAX - len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        len += (size_t)n;
        if (len == BYPASS_FILE_MAX) break;
    }
    close(fd);
    bool assignments = false;
    bool ok = bypass_key_in(text, out, size, &assignments);
    explicit_bzero(text, BYPASS_FILE_MAX + 1);
    free(text);
    if (!ok) {
        explicit_bzero(out, size);
        err_set(e, ERR_USAGE, assignments ? "%s has no PDS_RATE_LIMIT_BYPASS_KEY= line: add one (the PDS reads it at start)"
                                          : "%s holds no bypass key: put the key alone on one line, or give the PDS's env file", path);
        return false;
    }
    size_t kl = strlen(out);
    bool printable = kl > 0 && kl < 256;
    for (size_t i = 0; i < kl && printable; i++) printable = out[i] > ' ' && out[i] < 127;
    if (!printable) {
        explicit_bzero(out, size);
        err_set(e, ERR_USAGE, "the bypass key in %s must be 1 to 255 printable characters without spaces", path);
        return false;
    }
    return true;
}

bool cli_have_tty(void) {
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (fd < 0) return false;
    close(fd);
    return true;
}

bool cli_prompt_secret(const char *prompt, char *out, size_t size) {
    FILE *tty = fopen("/dev/tty", "r+");
    if (!tty) return false;
    struct termios old, quiet;
    bool restore = tcgetattr(fileno(tty), &old) == 0;
    if (restore) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
        quiet.c_lflag |= ICANON;
        tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
    }
    fputs(prompt, tty);
    fflush(tty);
    bool ok = fgets(out, (int)size, tty) != NULL;
    if (restore) tcsetattr(fileno(tty), TCSAFLUSH, &old);
    fputc('\n', tty);
    fclose(tty);
    if (!ok) return false;
    chomp(out);
    return out[0] != 0;
}

bool cli_get_secret(const char *file, const char *env_name, const char *prompt, const char *what, char *out, size_t size,
                    err_t *e) {
    if (file) return cli_secret_from_file(file, out, size, e);
    const char *env = env_name ? getenv(env_name) : NULL;
    if (env && *env) {
        if (strlen(env) >= size) {
            err_set(e, ERR_LIMIT, "%s in %s is too long", what, env_name);
            return false;
        }
        snprintf(out, size, "%s", env);
        return true;
    }
    if (prompt && cli_prompt_secret(prompt, out, size)) return true;
    err_set(e, ERR_USAGE, "no %s: give it in a file%s%s, or run in a terminal to be asked", what, env_name ? " or in $" : "",
            env_name ? env_name : "");
    return false;
}

bool cli_confirm(const char *question) {
    FILE *tty = fopen("/dev/tty", "r+");
    if (!tty) return false;
    char safe[8192];
    fprintf(tty, "%s [y/N] ", cli_untrusted_lines(question, safe, sizeof safe));
    fflush(tty);
    char line[16] = "";
    bool yes = fgets(line, sizeof line, tty) && (line[0] == 'y' || line[0] == 'Y');
    fclose(tty);
    return yes;
}

err_code cli_mkdirs(const char *path, err_t *e) {
    char p[1024];
    if (strlen(path) >= sizeof p) return err_set(e, ERR_USAGE, "path too long: %s", path);
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0700) != 0 && errno != EEXIST) return err_set(e, ERR_IO, "cannot create %s: %s", p, strerror(errno));
        *s = '/';
    }
    if (mkdir(p, 0700) != 0 && errno != EEXIST) return err_set(e, ERR_IO, "cannot create %s: %s", p, strerror(errno));
    return ERR_OK;
}

void cli_state_dir(char *out, size_t size) {
    const char *d = getenv("PDSMOVE_STATE_DIR");
    if (d && *d) {
        snprintf(out, size, "%s", d);
        return;
    }
    const char *x = getenv("XDG_STATE_HOME");
    if (x && *x) {
        snprintf(out, size, "%s/pdsmove", x);
        return;
    }
    const char *h = getenv("HOME");
    snprintf(out, size, "%s/.local/state/pdsmove", h && *h ? h : "/tmp");
}
