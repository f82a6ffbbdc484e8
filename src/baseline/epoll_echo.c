/*
 * Benchmark baseline (optional): a plain C edge-triggered epoll echo server.
 * Built by `echo-bench suite` with `cc -O2` when a C compiler is present;
 * never part of the shipped server.
 *
 *   epoll-echo [--listen IPV4:PORT]     prints "listening on IP:PORT"
 *
 * The floor of what an epoll echo costs: the same syscalls per request as
 * echo-reactor (one recv, one send, no epoll_ctl while echoing; a short read
 * counts as drained unless the peer's FIN was reported) and almost no code
 * of its own. Bytes the socket would not take are kept in a per-connection
 * buffer (allocated only then) and flushed on EPOLLOUT, and reading pauses
 * while anything is pending.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 16384
#define MAXEV 1024

struct conn {
    int fd;
    char *pend; /* unsent echo bytes, NULL when nothing is pending */
    size_t off, len;
};

static char buf[BUF];

static void closeconn(struct conn *c) {
    close(c->fd);
    free(c->pend);
    free(c);
}

/* 0 = keep, -1 = close */
static int flush(struct conn *c) {
    while (c->off < c->len) {
        ssize_t n = send(c->fd, c->pend + c->off, c->len - c->off, 0);
        if (n < 0) {
            if (errno == EAGAIN) return 0;
            if (errno == EINTR) continue;
            return -1;
        }
        c->off += (size_t)n;
    }
    free(c->pend);
    c->pend = NULL;
    c->off = c->len = 0;
    return 0;
}

static int on_read(struct conn *c, int peer_closed) {
    for (;;) {
        if (c->pend) return 0; /* backpressure: wait for EPOLLOUT */
        ssize_t n = recv(c->fd, buf, BUF, 0);
        if (n == 0) return -1;
        if (n < 0) {
            if (errno == EAGAIN) return 0;
            if (errno == EINTR) continue;
            return -1;
        }
        size_t done = 0;
        while (done < (size_t)n) {
            ssize_t w = send(c->fd, buf + done, (size_t)n - done, 0);
            if (w < 0) {
                if (errno == EINTR) continue;
                if (errno != EAGAIN) return -1;
                c->len = (size_t)n - done;
                c->off = 0;
                c->pend = malloc(c->len);
                if (!c->pend) return -1;
                memcpy(c->pend, buf + done, c->len);
                return 0;
            }
            done += (size_t)w;
        }
        /* a short read drained the socket, unless a FIN came with it */
        if ((size_t)n < BUF && !peer_closed) return 0;
    }
}

int main(int argc, char **argv) {
    const char *listen_at = "127.0.0.1:7007";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) listen_at = argv[++i];
        else { fprintf(stderr, "usage: %s [--listen IPV4:PORT]\n", argv[0]); return 2; }
    }
    char host[64];
    const char *colon = strrchr(listen_at, ':');
    if (!colon || (size_t)(colon - listen_at) >= sizeof host) { fprintf(stderr, "bad address %s\n", listen_at); return 2; }
    memcpy(host, listen_at, (size_t)(colon - listen_at));
    host[colon - listen_at] = 0;
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) { fprintf(stderr, "bad address %s\n", listen_at); return 2; }

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* accepted sockets inherit it */
    setsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, SOMAXCONN) < 0) {
        fprintf(stderr, "cannot bind %s: %s\n", listen_at, strerror(errno));
        return 1;
    }
    socklen_t sl = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
    printf("listening on %s:%u\n", ip, ntohs(sa.sin_port));
    fflush(stdout);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event evs[MAXEV];
    for (;;) {
        int n = epoll_wait(ep, evs, MAXEV, -1);
        if (n < 0) { if (errno == EINTR) continue; perror("epoll_wait"); return 1; }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) break;
                    struct conn *nc = calloc(1, sizeof *nc);
                    if (!nc) { close(fd); continue; }
                    nc->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = nc};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) < 0) { closeconn(nc); continue; }
                }
                continue;
            }
            int bad = 0, was_pending = c->pend != NULL;
            if ((evs[i].events & EPOLLOUT) && was_pending) bad = flush(c);
            /* after a completed flush, read what arrived while paused (no new edge for it) */
            if (!bad && ((evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) || (was_pending && !c->pend)))
                bad = on_read(c, (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0);
            if (bad) closeconn(c);
        }
    }
}
