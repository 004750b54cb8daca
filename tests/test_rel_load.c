/* test_rel_load.c - load: one `petal server` process and many concurrent
 * clients on 127.0.0.1 (issue 7). The clients are threads of this process,
 * each with its own connection through the pnet client API, answering
 * FitIns with the weights they received and EvaluateIns with a fixed loss;
 * the model is a tiny JSON model (260 parameters) so the server's memory is
 * all per-client state.
 *
 *   test_rel_load                          100 clients, 2 rounds (make test)
 *   test_rel_load --clients 1000 --rounds 3 --bench   (make bench-load)
 *
 * Prints each round's time (from the server's events.jsonl), the server's
 * peak RSS (wait4 ru_maxrss), its RSS before the clients came, and the bound
 * 3 x model size + 64 KiB per client for the growth. Raises RLIMIT_NOFILE's
 * soft limit to the hard limit (inherited by the server), or says how far
 * it falls short. PASS/FAIL lines; exit status 1 on failure. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "petal.h"
#include "pnet.h"

#define MODEL "{\"input_shape\": [8, 8, 1], \"layers\": [{\"type\": \"Flatten\"}, " \
              "{\"type\": \"Dense\", \"units\": 4, \"activation\": \"softmax\"}]}"
#define MODEL_FLOATS (8 * 8 * 4 + 4)

static int failures;
static char g_addr[64];
static double g_deadline;
static atomic_int n_connected, n_done, n_failed, n_fits, n_evals;
static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static char first_err[PT_ERRLEN + 64];

static void check(const char *name, int ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void check(const char *name, int ok, const char *fmt, ...)
{
    if (ok) {
        printf("PASS: %s\n", name);
    } else {
        va_list ap;
        failures++;
        printf("FAIL: %s -- ", name);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
    }
    fflush(stdout);
}

static void client_error(int idx, const char *what, const char *e)
{
    pthread_mutex_lock(&err_lock);
    if (!first_err[0]) snprintf(first_err, sizeof first_err, "client %d: %s: %.200s", idx, what, e);
    pthread_mutex_unlock(&err_lock);
    atomic_fetch_add(&n_failed, 1);
}

static int reply(pnet_client *net, const pnet_client_out *m, char *e)
{
    pnet_msg *msg = NULL;
    int rc = pnet_client_out_msg(m, &msg, e);
    if (!rc) rc = pnet_client_send_msg(net, msg, e);
    pnet_msg_unref(msg);
    return rc;
}

static void *client_main(void *arg)
{
    int idx = (int)(intptr_t)arg;
    char e[PT_ERRLEN];
    pnet_client *net = NULL;
    pnet_client_opts co = {0};
    pt_params w = {0};
    co.address = g_addr;
    co.connect_deadline_s = 120;
    co.backoff_max_s = 1;
    if (pnet_client_connect(&net, &co, e)) {
        client_error(idx, "connect", e);
        return NULL;
    }
    atomic_fetch_add(&n_connected, 1);
    for (;;) {
        uint8_t *buf;
        size_t len;
        pnet_server_in in;
        int rc = pnet_client_recv(net, &buf, &len, 1000, e);
        if (rc == PT_ERR_TIMEOUT) {
            if (pt_now() > g_deadline) {
                client_error(idx, "recv", "deadline passed");
                break;
            }
            continue;
        }
        if (rc) {
            client_error(idx, "recv", e);
            break;
        }
        if ((rc = pnet_server_in_decode(buf, len, NULL, &in, e))) {
            client_error(idx, "decode", e);
            break;
        }
        pnet_client_out r = {0};
        r.status_message = "Success";
        if (in.type == PNET_SMSG_FIT) {
            rc = pnet_params_decode(&in.params, &w, 0, e);
            r.type = PNET_CMSG_FIT;
            r.params = &w;
            r.num_examples = 1 + idx % 7;
            if (!rc) rc = reply(net, &r, e);
            atomic_fetch_add(&n_fits, 1);
        } else if (in.type == PNET_SMSG_EVALUATE) {
            r.type = PNET_CMSG_EVALUATE;
            r.loss = 1.0f;
            r.num_examples = 1;
            rc = reply(net, &r, e);
            atomic_fetch_add(&n_evals, 1);
        } else if (in.type == PNET_SMSG_RECONNECT) {
            r.type = PNET_CMSG_DISCONNECT;
            r.reason = PNET_REASON_ACK;
            reply(net, &r, e);
            pnet_client_close(net, 2000);
            pnet_server_in_free(&in);
            atomic_fetch_add(&n_done, 1);
            break;
        } else {
            r.type = PNET_CMSG_GET_PARAMETERS;
            r.status_code = PNET_CODE_GET_PARAMETERS_NOT_IMPLEMENTED;
            rc = reply(net, &r, e);
        }
        pnet_server_in_free(&in);
        if (rc) {
            client_error(idx, "reply", e);
            break;
        }
    }
    pt_params_free(&w);
    pnet_client_free(net);
    return NULL;
}

static long proc_kb(pid_t pid, const char *key)
{
    char path[64], line[256];
    long v = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key))) v = strtol(line + strlen(key) + 1, NULL, 10);
    fclose(f);
    return v;
}

/* Print the server's rounds from events.jsonl; returns how many completed. */
static int report_rounds(const char *path, int clients)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    if (!f) return 0;
    while (getline(&line, &cap, f) > 0) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *src = cJSON_GetObjectItem(j, "source"), *ev = cJSON_GetObjectItem(j, "event");
        if (cJSON_IsString(src) && cJSON_IsString(ev) && !strcmp(src->valuestring, "server") &&
            !strcmp(ev->valuestring, "round")) {
            int r = cJSON_GetObjectItem(j, "round")->valueint;
            int res = cJSON_GetObjectItem(j, "results")->valueint;
            int fl = cJSON_GetObjectItem(j, "failures")->valueint;
            const cJSON *rt = cJSON_GetObjectItem(j, "round_time");
            const cJSON *ft = cJSON_GetObjectItem(j, "fit_time");
            const cJSON *et = cJSON_GetObjectItem(j, "evaluate_time");
            printf("  round %d: %d results, %d failures; round %.3f s (fit %.3f s, evaluate "
                   "%.3f s)\n", r, res, fl, cJSON_IsNumber(rt) ? rt->valuedouble : -1,
                   cJSON_IsNumber(ft) ? ft->valuedouble : -1,
                   cJSON_IsNumber(et) ? et->valuedouble : -1);
            if (res == clients && fl == 0) n++;
        }
        cJSON_Delete(j);
    }
    free(line);
    fclose(f);
    return n;
}

int main(int argc, char **argv)
{
    int clients = 100, rounds = 2, bench = 0;
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    char petal[512], dir[] = "/tmp/petal-load-XXXXXX", pf[600], out[600], logp[600];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--clients") && i + 1 < argc) clients = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bench")) bench = 1;
        else {
            fprintf(stderr, "usage: test_rel_load [--clients N] [--rounds R] [--bench]\n");
            return 2;
        }
    }
    if (clients < 1 || clients > 100000 || rounds < 1 || rounds > 100) {
        fprintf(stderr, "test_rel_load: --clients 1..100000, --rounds 1..100\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    snprintf(petal, sizeof petal, "%s/petal", build);
    if (access(petal, X_OK)) {
        printf("FAIL: load_petal_binary -- %s not built\n", petal);
        return 1;
    }

    /* file descriptors: this process holds one socket per client, so does the server */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rlim_t need = (rlim_t)clients + 128;
    if (rl.rlim_cur < need) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur != was)
            printf("  RLIMIT_NOFILE soft limit raised from %llu to %llu (hard %llu)\n",
                   (unsigned long long)was, (unsigned long long)rl.rlim_cur,
                   (unsigned long long)rl.rlim_max);
    }
    if (rl.rlim_cur < need) {
        printf("FAIL: load_fd_limit -- RLIMIT_NOFILE is %llu (hard %llu), %d clients need "
               "%llu descriptors in this process and in the server: raise the hard limit "
               "(ulimit -Hn, /etc/security/limits.conf) or use fewer clients\n",
               (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max, clients,
               (unsigned long long)need);
        return 1;
    }

    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(pf, sizeof pf, "%s/port", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(logp, sizeof logp, "%s/server.log", dir);
    char n_s[16], r_s[16], maxc[16];
    snprintf(n_s, sizeof n_s, "%d", clients);
    snprintf(r_s, sizeof r_s, "%d", rounds);
    snprintf(maxc, sizeof maxc, "%d", clients + 16);
    char *args[] = {petal, "server", "--address", "127.0.0.1:0", "--port-file", pf,
                    "--model", MODEL, "--rounds", r_s, "--min-available-clients", n_s,
                    "--min-fit-clients", n_s, "--min-evaluate-clients", n_s,
                    "--wait-clients", "120", "--round-timeout", "120", "--max-connections",
                    maxc, "--max-conn-per-addr", "0", "--out", out, "--threads", "1", NULL};
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        FILE *lf = freopen(logp, "w", stderr);
        (void)lf;
        dup2(2, 1);
        execv(petal, args);
        _exit(127);
    }
    double t0 = pt_now();
    int port = 0;
    while (pt_now() - t0 < 30 && !port) {
        FILE *f = fopen(pf, "r");
        if (f) {
            if (fscanf(f, "%d", &port) != 1) port = 0;
            fclose(f);
        }
        if (!port) usleep(20000);
    }
    if (!port) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        printf("FAIL: load_server_start -- see %s\n", logp);
        return 1;
    }
    usleep(200000);
    long base_kb = proc_kb(pid, "VmRSS:");
    snprintf(g_addr, sizeof g_addr, "127.0.0.1:%d", port);
    g_deadline = pt_now() + 300;

    pthread_t *th = calloc((size_t)clients, sizeof *th);
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 256 * 1024);
    double t_start = pt_now();
    int started = 0;
    for (int i = 0; i < clients; i++) {
        int rc = pthread_create(&th[i], &at, client_main, (void *)(intptr_t)i);
        if (rc) {
            printf("  pthread_create failed after %d threads: %s\n", i, strerror(rc));
            break;
        }
        started++;
    }
    pthread_attr_destroy(&at);
    double t_conn = 0;
    while (atomic_load(&n_connected) + atomic_load(&n_failed) < started && pt_now() < g_deadline)
        usleep(10000);
    t_conn = pt_now() - t_start;
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    free(th);
    double t_all = pt_now() - t_start;

    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    double tw = pt_now();
    pid_t w;
    while ((w = wait4(pid, &status, WNOHANG, &ru)) == 0 && pt_now() - tw < 60) usleep(20000);
    if (w == 0) {
        kill(pid, SIGKILL);
        wait4(pid, &status, 0, &ru);
    }
    long peak_kb = ru.ru_maxrss;
    char ev[700];
    snprintf(ev, sizeof ev, "%s/events.jsonl", out);
    printf("load: %d clients (threads of one process), %d rounds, model %d floats (%d bytes)\n",
           clients, rounds, MODEL_FLOATS, MODEL_FLOATS * 4);
    printf("  all %d connected in %.2f s; federation done in %.2f s\n", clients, t_conn, t_all);
    int complete = report_rounds(ev, clients);
    double bound = 3.0 * MODEL_FLOATS * 4 + 65536.0 * clients;
    double growth = (double)(peak_kb - base_kb) * 1024;
    printf("  server RSS: %.1f MiB before the clients, peak %.1f MiB; growth %.1f MiB "
           "(%.1f KiB per client) vs bound 3 x model + 64 KiB x clients = %.1f MiB\n",
           base_kb / 1024.0, peak_kb / 1024.0, growth / 1048576, growth / 1024 / clients,
           bound / 1048576);
    check("load_server_exit_0", WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "server status %d; log %s", status, logp);
    check("load_all_clients_done", atomic_load(&n_done) == clients && !atomic_load(&n_failed),
          "%d of %d said goodbye, %d failed; first error: %s", atomic_load(&n_done), clients,
          atomic_load(&n_failed), first_err);
    check("load_rounds_complete", complete == rounds, "%d of %d rounds had all %d results",
          complete, rounds, clients);
    check("load_fits_and_evals", atomic_load(&n_fits) == clients * rounds &&
          atomic_load(&n_evals) == clients * rounds, "fits %d evals %d",
          atomic_load(&n_fits), atomic_load(&n_evals));
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifdef SANITIZED /* redzones and quarantine: the server's RSS says nothing here */
    printf("SKIP: load_server_rss_growth_within_bound ASan build (RSS not representative)\n");
#else
    check("load_server_rss_growth_within_bound", base_kb > 0 && growth <= bound,
          "growth %.0f bytes > bound %.0f bytes", growth, bound);
#endif
    if (!failures && !bench) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    } else {
        printf("  server log and results: %s\n", dir);
    }
    return failures ? 1 : 0;
}
