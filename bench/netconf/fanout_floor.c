/*
 * The kernel's floor under a notification fan-out, the anchor of
 * bench/netconf/notifications.py: the same number of loopback TCP
 * connections as there are subscribed sessions, whose readers never read
 * (the benchmark's held sessions are stopped), and per round one send() of
 * SIZE bytes (one SSH packet of a state-change) to each, by THREADS
 * threads (the daemon's tokio workers), each its share. No SSH, no XML, no
 * VRRP: only the system calls that any server with one TCP connection per
 * session must make, on the same CPUs as the benchmark.
 *
 *   fanout_floor N ROUNDS SIZE PAUSE_MS THREADS
 *
 * Per round, after PAUSE_MS of quiet: the time from the start of the
 * round to the completion of the send to one connection chosen at random
 * (the probe's place moves in the daemon's fan-out too), and to the end
 * of the round. Prints one line per round: "position_ms end_ms".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* the receive buffer of a socket never read (notifications.py RCVBUF) */
#define RCVBUF (4 << 20)

static int n, rounds, size, threads;
static int *srv;
static char *buf;
static pthread_barrier_t start_b, end_b;
static double t0, at_pick;
static int pick;
static double *ends;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void *sender(void *arg)
{
    long k = (long)arg;
    for (int r = 0; r < rounds; r++) {
        pthread_barrier_wait(&start_b);
        for (int i = (int)k; i < n; i += threads) {
            if (send(srv[i], buf, size, 0) != size) {
                perror("send");
                exit(1);
            }
            if (i == pick)
                at_pick = now_ms() - t0;
        }
        ends[k] = now_ms() - t0;
        pthread_barrier_wait(&end_b);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s N ROUNDS SIZE PAUSE_MS THREADS\n", argv[0]);
        return 2;
    }
    n = atoi(argv[1]);
    rounds = atoi(argv[2]);
    size = atoi(argv[3]);
    int pause_ms = atoi(argv[4]);
    threads = atoi(argv[5]);
    if (n < 1 || rounds < 1 || size < 1 || threads < 1 || threads > 64)
        return 2;
    int one = 1;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    if (bind(ls, (void *)&a, sizeof a) || listen(ls, 4096) || getsockname(ls, (void *)&a, &l)) {
        perror("listen");
        return 1;
    }
    int *cl = malloc(n * sizeof(int));
    srv = malloc(n * sizeof(int));
    for (int i = 0; i < n; i++) {
        cl[i] = socket(AF_INET, SOCK_STREAM, 0);
        /* as the held sessions': a window that never closes in a run
           (SO_RCVBUFFORCE: root, above net.core.rmem_max) */
        int rcv = RCVBUF;
        setsockopt(cl[i], SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv);
        if (cl[i] < 0 || connect(cl[i], (void *)&a, sizeof a)) {
            perror("connect");
            return 1;
        }
        srv[i] = accept(ls, NULL, NULL);
        if (srv[i] < 0) {
            perror("accept");
            return 1;
        }
        /* as russh's: each packet goes at once */
        setsockopt(srv[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    buf = malloc(size);
    memset(buf, 'x', size);
    ends = calloc(threads, sizeof(double));
    pthread_barrier_init(&start_b, NULL, threads + 1);
    pthread_barrier_init(&end_b, NULL, threads + 1);
    pthread_t th[64];
    for (long k = 0; k < threads; k++)
        pthread_create(&th[k], NULL, sender, (void *)k);
    srandom(getpid());
    for (int r = 0; r < rounds; r++) {
        usleep(pause_ms * 1000);
        pick = (int)(random() % n);
        t0 = now_ms();
        pthread_barrier_wait(&start_b);
        pthread_barrier_wait(&end_b);
        double end = 0;
        for (int k = 0; k < threads; k++)
            if (ends[k] > end)
                end = ends[k];
        printf("%.3f %.3f\n", at_pick, end);
    }
    return 0;
}
