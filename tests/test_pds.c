/* test_pds.c — PDS sessions (src/transport/pds.c) without a server: what pds_login leaves in
 * freed memory. (Logins against real PDSes run in tests/integration/.) */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pdsmove/pds.h"

/* 50 bytes with its NUL: the string value block has a size no serialisation buffer has
 * (those grow in powers of two from 16; checked below) */
#define PW "correct-horse-battery-staple-0123456789-abcdefghij"

/* A spying free for jansson (plain malloc: strings jansson returns are freed with free()):
 * counts freed blocks of the string value's size that still hold PW. */
static int freed_with_password;
static size_t value_block_size;

static void spy_free(void *q) {
    if (q && malloc_usable_size(q) == value_block_size && memmem(q, malloc_usable_size(q), PW, sizeof PW - 1))
        freed_with_password++;
    free(q);
}

static size_t usable(size_t n) {
    void *p = malloc(n);
    cr_assert_not_null(p);
    size_t u = malloc_usable_size(p);
    free(p);
    return u;
}

Test(pds, login_zeroes_the_password_in_its_request_body_before_freeing_it) {
    value_block_size = usable(sizeof PW);
    for (size_t n = 16; n <= 4096; n *= 2)
        cr_assert_neq(usable(n), value_block_size, "a %zu-byte buffer is as large as the password's block here", n);
    json_set_alloc_funcs(malloc, spy_free);
    /* a loopback port nobody listens on: the request is built, serialised and fails fast */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(a.sin_port));
    xrpc_options o = {.base_backoff_ms = 1, .max_retries = 1};
    pds_session *s = NULL;
    err_t e = {0};
    cr_assert_eq(pds_session_new(url, &o, &s, &e), ERR_OK, "%s", e.msg);
    cr_assert_neq(pds_login(s, "alice.test", PW, NULL, &e), ERR_OK, "nothing listens there");
    pds_session_free(s);
    cr_assert_eq(freed_with_password, 0, "%d freed block(s) still held the password", freed_with_password);
}
