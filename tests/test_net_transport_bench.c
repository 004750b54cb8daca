/*
 * test_net_transport_bench.c - `make bench-net`: rounds of seed-cnn size
 * (7.4 M float32 parameters, 29.6 MB as NPY) through the gRPC server on
 * loopback. The server (this thread) encodes one FitIns and sends it to N
 * clients (threads using the blocking client API); each client decodes it,
 * re-encodes the weights unchanged as a FitRes and sends it back; the server
 * decodes every FitRes (tensor views). Reports tensor GB/s through the server
 * (FitIns out + FitRes in, per round wall time), the server thread's CPU
 * seconds per round, and a same-run memcpy of the same bytes.
 *
 *   test_net_transport_bench [--clients N] [--rounds R] [--raw] [--tls CERT KEY CA]
 *
 * --raw: after round 0 the clients send their first FitRes again without
 * decoding the FitIns (measures the transport alone, not the codec).
 */
#include "pnet.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* seed-cnn weights in Keras order (conv kernels HWIO, then bias; dense W, b) */
static const int nd[] = {4, 1, 4, 1, 4, 1, 2, 1, 2, 1};
static const int64_t s0[] = {3, 3, 3, 16}, s1[] = {16}, s2[] = {3, 3, 16, 32}, s3[] = {32},
                     s4[] = {3, 3, 32, 64}, s5[] = {64}, s6[] = {57600, 128}, s7[] = {128},
                     s8[] = {128, 10}, s9[] = {10};
static const int64_t *const shapes[] = {s0, s1, s2, s3, s4, s5, s6, s7, s8, s9};

static int nclients = 10, nrounds = 3;
static int raw; /* clients reuse their first FitRes instead of decoding + re-encoding */
static char addr[64];
static const char *tls_ca;

static double thread_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* ---- clients ------------------------------------------------------------------ */

static void *client_main(void *arg)
{
    (void)arg;
    char err[PT_ERRLEN];
    pnet_client_opts o;
    memset(&o, 0, sizeof o);
    o.address = addr;
    o.tls_ca = tls_ca;
    o.server_name = tls_ca ? "localhost" : NULL;
    pnet_client *c;
    if (pnet_client_connect(&c, &o, err)) {
        fprintf(stderr, "client: %s\n", err);
        return (void *)1;
    }
    pt_params p;
    memset(&p, 0, sizeof p);
    uint8_t *out = NULL;
    size_t cap = 0;
    void *ret = NULL;
    for (;;) {
        pnet_msg *m;
        if (pnet_client_recv_msg(c, &m, -1, err)) {
            fprintf(stderr, "client recv: %s\n", err);
            ret = (void *)1;
            break;
        }
        pnet_server_in in;
        if (pnet_server_in_decode(pnet_msg_data(m), pnet_msg_len(m), NULL, &in, err)) {
            fprintf(stderr, "client decode: %s\n", err);
            pnet_msg_unref(m);
            ret = (void *)1;
            break;
        }
        if (in.type == PNET_SMSG_RECONNECT) {
            pnet_server_in_free(&in);
            pnet_msg_unref(m);
            break;
        }
        if (raw && out) { /* transport only: send the FitRes built in round 0 again */
            pnet_server_in_free(&in);
            pnet_msg_unref(m);
            if (pnet_client_send(c, out, cap, err)) {
                fprintf(stderr, "client send: %s\n", err);
                ret = (void *)1;
                break;
            }
            continue;
        }
        int rc = pnet_params_decode(&in.params, &p, 0, err);
        pnet_server_in_free(&in);
        pnet_msg_unref(m);
        if (rc) {
            fprintf(stderr, "client params: %s\n", err);
            ret = (void *)1;
            break;
        }
        pnet_client_out res = {.type = PNET_CMSG_FIT, .status_message = "Success", .params = &p,
                               .num_examples = 100};
        size_t size, n;
        if (pnet_client_out_size(&res, &size, err)) break;
        if (size != cap) {
            free(out);
            cap = size;
            out = malloc(cap);
        }
        if (!out || pnet_client_out_pack(&res, out, cap, &n, err) ||
            pnet_client_send(c, out, n, err)) {
            fprintf(stderr, "client send: %s\n", err);
            ret = (void *)1;
            break;
        }
    }
    free(out);
    pt_params_free(&p);
    pnet_client_close(c, 2000);
    pnet_client_free(c);
    return ret;
}

/* ---- server ------------------------------------------------------------------- */

typedef struct bench {
    uint64_t ids[64];
    int njoined, nres, nleft, bad;
    pnet_msg *fitins;
    int verify;
} bench;

static void on_join(pnet_server *s, uint64_t id, const char *peer, void *user)
{
    (void)s;
    (void)peer;
    bench *b = user;
    if (b->njoined < 64) b->ids[b->njoined++] = id;
}

static void on_message(pnet_server *s, uint64_t id, pnet_msg *m, void *user)
{
    (void)s;
    (void)id;
    bench *b = user;
    pnet_client_in in;
    char err[PT_ERRLEN];
    if (pnet_client_in_decode(pnet_msg_data(m), pnet_msg_len(m), NULL, &in, err) ||
        in.type != PNET_CMSG_FIT || in.params.n != 10) {
        b->bad++;
    } else if (b->verify) {
        /* the FitRes tensors must be the FitIns tensors, byte for byte */
        pnet_server_in fi;
        if (pnet_server_in_decode(pnet_msg_data(b->fitins), pnet_msg_len(b->fitins), NULL, &fi,
                                  err))
            b->bad++;
        else {
            for (size_t i = 0; i < 10; i++)
                if (fi.params.tensors[i].len != in.params.tensors[i].len ||
                    memcmp(fi.params.tensors[i].ptr, in.params.tensors[i].ptr,
                           in.params.tensors[i].len))
                    b->bad++;
            pnet_server_in_free(&fi);
        }
    }
    pnet_client_in_free(&in);
    b->nres++;
}

static void on_leave(pnet_server *s, uint64_t id, int reason, const char *detail, void *user)
{
    (void)s;
    (void)id;
    (void)reason;
    (void)detail;
    ((bench *)user)->nleft++;
}

static double proc_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static long minflt(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *cert = NULL, *key = NULL;
    size_t rx_keep = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--clients") && i + 1 < argc)
            nclients = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            nrounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rx-keep") && i + 1 < argc)
            rx_keep = (size_t)strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--raw"))
            raw = 1;
        else if (!strcmp(argv[i], "--tls") && i + 3 < argc) {
            cert = argv[++i];
            key = argv[++i];
            tls_ca = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--clients N] [--rounds R] [--raw] [--tls CERT KEY CA] "
                            "[--rx-keep BYTES]\n", argv[0]);
            return 2;
        }
    }
    if (nclients < 1 || nclients > 64 || nrounds < 1) return 2;
    char err[PT_ERRLEN];
    pt_params params;
    memset(&params, 0, sizeof params);
    if (pt_params_init(&params, 10, nd, shapes)) return 1;
    for (size_t i = 0; i < params.total; i++) params.buf[i] = (float)((i * 2654435761u) % 1000) * 1e-3f;

    bench b;
    memset(&b, 0, sizeof b);
    pnet_server_opts so;
    memset(&so, 0, sizeof so);
    so.address = "127.0.0.1:0";
    so.tls_cert = cert;
    so.tls_key = key;
    so.rx_keep = rx_keep; /* 0 = default: big receive buffers freed after each message */
    so.user = &b;
    so.on_join = on_join;
    so.on_message = on_message;
    so.on_leave = on_leave;
    pnet_server *s;
    if (pnet_server_new(&s, &so, err)) {
        fprintf(stderr, "server: %s\n", err);
        return 1;
    }
    snprintf(addr, sizeof addr, "127.0.0.1:%d", pnet_server_port(s));
    pthread_t th[64];
    for (int i = 0; i < nclients; i++) pthread_create(&th[i], NULL, client_main, NULL);
    while (b.njoined < nclients) pnet_server_poll(s, 100);

    /* FitIns, encoded once (into a fresh buffer: first-touch cost included) */
    pnet_server_out fit = {.type = PNET_SMSG_FIT, .params = &params};
    size_t size, n;
    double te = pt_now(), ce = thread_cpu();
    if (pnet_server_out_size(&fit, &size, err) || pnet_msg_new(&b.fitins, size) ||
        pnet_server_out_pack(&fit, pnet_msg_data(b.fitins), size, &n, err)) {
        fprintf(stderr, "encode: %s\n", err);
        return 1;
    }
    te = pt_now() - te;
    ce = thread_cpu() - ce;
    double tensor_mb = params.total * 4 / 1e6;
    printf("bench-net: %d clients, seed-cnn %zu params = %.1f MB tensors, FitIns %.1f MB%s%s\n",
           nclients, params.total, tensor_mb, size / 1e6, cert ? ", TLS" : ", h2c",
           raw ? ", raw (clients skip decode/encode)" : ", clients decode + re-encode");
    printf("  FitIns encode (fresh buffer): %.3f s wall, %.3f s CPU\n", te, ce);

    double *gbs = calloc((size_t)nrounds + 1, sizeof *gbs),
           *cpus = calloc((size_t)nrounds + 1, sizeof *cpus);
    for (int r = 0; r <= nrounds; r++) { /* round 0 = warm-up (fresh buffers), verified */
        b.nres = 0;
        b.verify = r == 0;
        double t0 = pt_now(), c0 = thread_cpu();
        long f0 = minflt();
        double p0 = proc_cpu();
        for (int i = 0; i < nclients; i++) pnet_server_send(s, b.ids[i], b.fitins);
        while (b.nres < nclients && b.nleft == 0) pnet_server_poll(s, 100);
        double dt = pt_now() - t0, dc = thread_cpu() - c0;
        if (b.nleft) {
            fprintf(stderr, "a client left during round %d\n", r);
            return 1;
        }
        double bytes = 2.0 * nclients * params.total * 4;
        gbs[r] = bytes / dt / 1e9;
        cpus[r] = dc;
        printf("  round %d%s: %.3f s wall, %.2f GB/s tensors through the server, server CPU "
               "%.3f s, all threads CPU %.3f s, %ld page faults\n", r,
               r == 0 ? " (warm-up, verified)" : "", dt, gbs[r], dc, proc_cpu() - p0,
               minflt() - f0);
    }
    /* goodbye */
    pnet_msg *bye;
    pnet_server_out rc = {.type = PNET_SMSG_RECONNECT};
    pnet_server_out_size(&rc, &size, err);
    pnet_msg_new(&bye, size);
    pnet_server_out_pack(&rc, pnet_msg_data(bye), size, &n, err);
    for (int i = 0; i < nclients; i++) pnet_server_send(s, b.ids[i], bye);
    pnet_msg_unref(bye);
    double end = pt_now() + 10;
    while (b.nleft < nclients && pt_now() < end) pnet_server_poll(s, 50);
    int client_fail = 0;
    for (int i = 0; i < nclients; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        client_fail += ret != NULL;
    }
    pnet_stats st;
    pnet_server_stats(s, 0, &st);
    pnet_server_free(s);

    /* same-run memcpy of the same bytes (2 x clients x tensors), warm buffers */
    size_t nb = params.total * 4;
    uint8_t *dst = malloc(nb);
    memset(dst, 1, nb);
    double tm = pt_now();
    for (int k = 0; k < 2 * nclients; k++) {
        memcpy(dst, params.buf, nb);
        __asm__ volatile("" : : "r"(dst) : "memory");
    }
    tm = pt_now() - tm;
    double memcpy_gbs = 2.0 * nclients * nb / tm / 1e9;
    free(dst);

    qsort(gbs + 1, (size_t)nrounds, sizeof *gbs, cmp_d);
    qsort(cpus + 1, (size_t)nrounds, sizeof *cpus, cmp_d);
    double med_gbs = gbs[1 + nrounds / 2], med_cpu = cpus[1 + nrounds / 2];
    printf("  median of %d rounds: %.2f GB/s through the server (target >= 1), server CPU "
           "%.3f s/round\n", nrounds, med_gbs, med_cpu);
    printf("  memcpy of the same %.0f MB: %.2f GB/s (%.3f s)\n", 2.0 * nclients * nb / 1e6,
           memcpy_gbs, tm);
    printf("  server totals: %llu msgs in, %llu out, %.1f MB wire in, %.1f MB wire out\n",
           (unsigned long long)st.msgs_in, (unsigned long long)st.msgs_out, st.wire_in / 1e6,
           st.wire_out / 1e6);
    printf("  verification: %s; client failures: %d\n", b.bad ? "FAILED" : "tensors identical",
           client_fail);
    pnet_msg_unref(b.fitins);
    pt_params_free(&params);
    free(gbs);
    free(cpus);
    return b.bad || client_fail ? 1 : 0;
}
