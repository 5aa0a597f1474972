/* http_testutil.h — loopback servers for the transport tests: a listening socket (which alone,
 * never accepting, is a server that accepts and never answers: the kernel completes the
 * handshake from the backlog) and a server that answers with body bytes without end.
 * Header-only test helper. */
#ifndef PDSMOVE_HTTP_TESTUTIL_H
#define PDSMOVE_HTTP_TESTUTIL_H

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int listen_loopback(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(fd, 8), 0);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Answers one connection with head, then body bytes without end (until the client hangs up,
 * at most 1 GiB). Run serve_endless in a thread; `sent` counts the body bytes. */
typedef struct {
    int listen_fd;
    const char *head;
    uint64_t sent;
} endless;

static void *serve_endless(void *arg) {
    endless *s = arg;
    int fd = accept(s->listen_fd, NULL, NULL);
    if (fd < 0) return NULL;
    char req[8192];
    ssize_t n = read(fd, req, sizeof req);
    (void)n;
    if (send(fd, s->head, strlen(s->head), MSG_NOSIGNAL) > 0) {
        static char chunk[65536];
        memset(chunk, '7', sizeof chunk);
        while (s->sent < ((uint64_t)1 << 30)) {
            ssize_t w = send(fd, chunk, sizeof chunk, MSG_NOSIGNAL);
            if (w <= 0) break;
            s->sent += (uint64_t)w;
        }
    }
    close(fd);
    return NULL;
}

#endif
