/* test_results.c - results writer (log + events.jsonl) and system stats. */
#include "results_int.h"
#include "test.h"

#include <cjson/cJSON.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[256];

static const char *mktmp(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/pt_results_XXXXXX");
    if (!mkdtemp(tmpdir)) return NULL;
    return tmpdir;
}

static void rm_rf(const char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", d);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b) b[n] = '\0';
    fclose(f);
    return b;
}

/* Parse every line of events.jsonl; returns the number of lines, -1 on a bad line. */
static int parse_lines(const char *text, cJSON **objs, int max)
{
    int n = 0;
    const char *p = text;
    while (*p) {
        const char *e = strchr(p, '\n');
        if (!e) return -1; /* every line ends with a newline */
        char *line = strndup(p, (size_t)(e - p));
        cJSON *o = cJSON_Parse(line);
        free(line);
        if (!o || !cJSON_IsObject(o)) {
            cJSON_Delete(o);
            return -1;
        }
        if (n < max && objs) objs[n] = o;
        else cJSON_Delete(o);
        n++;
        p = e + 1;
    }
    return n;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int is_null(const cJSON *o, const char *k)
{
    return cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, k));
}

static void t_server_events(void)
{
    char err[PT_ERRLEN] = "", path[512];
    pt_results *r = NULL;
    const char *d = mktmp();
    ASSERT(d);
    char sub[300];
    snprintf(sub, sizeof sub, "%s/openblas/FedAvg/2", d);
    ASSERT_OK(pt_results_open(&r, sub, "server", err));
    ASSERT_STR_EQ(pt_results_source(r), "server");

    pt_config cfg = {0};
    ASSERT_OK(pt_config_set_double(&cfg, "lr", 0.01));
    ASSERT_OK(pt_config_set_int(&cfg, "epochs", 2));
    pt_run_info info = {"FedAvg", 2, "openblas", "fmnist-cnn", "fashion-mnist", 3,
                        "127.0.0.1:9092", &cfg};
    ASSERT_OK(pt_results_run_start(r, &info));
    ASSERT_OK(pt_results_round0(r, 2.30, 0.1, 0.5));
    pt_round_stats s;
    pt_round_stats_init(&s);
    s.round = 1;
    s.fit_time = 10.5;
    s.evaluate_time = 1.25;
    s.round_time = 12.0;
    s.loss_centralized = 0.5;
    s.accuracy_centralized = 0.82;
    s.bytes_sent = 1000;
    s.bytes_received = 2000;
    s.clients_sampled = 2;
    s.results = 2;
    s.failures = 0;
    ASSERT_OK(pt_results_round(r, &s));
    ASSERT_OK(pt_results_failure(r, 2, "1", "fit", "timeout after 30 s"));
    PT_RINFO(r, "FL finished in %.2f", 12.5);
    ASSERT_OK(pt_results_run_end(r, 12.5, 1, "ok", NULL));
    pt_results_close(r);
    pt_config_free(&cfg);

    snprintf(path, sizeof path, "%s/events.jsonl", sub);
    char *text = slurp(path);
    ASSERT(text);
    cJSON *o[8] = {0};
    int n = parse_lines(text, o, 8);
    free(text);
    ASSERT_EQ_INT(n, 5);
    ASSERT_STR_EQ(str(o[0], "event"), "run_start");
    ASSERT_STR_EQ(str(o[0], "source"), "server");
    ASSERT(num(o[0], "ts") > 1.6e9);
    ASSERT_STR_EQ(str(o[0], "strategy"), "FedAvg");
    ASSERT_EQ_INT(num(o[0], "n_clients"), 2);
    ASSERT_NEAR(num(cJSON_GetObjectItem(o[0], "config"), "lr"), 0.01, 1e-12);
    ASSERT_STR_EQ(str(o[1], "event"), "round0");
    ASSERT_NEAR(num(o[1], "accuracy_centralized"), 0.1, 1e-12);
    ASSERT_STR_EQ(str(o[2], "event"), "round");
    ASSERT_EQ_INT(num(o[2], "round"), 1);
    ASSERT_NEAR(num(o[2], "fit_time"), 10.5, 1e-12);
    ASSERT_EQ_INT(num(o[2], "bytes_received"), 2000);
    ASSERT(is_null(o[2], "loss_distributed")); /* NAN -> null */
    ASSERT(is_null(o[2], "eval_results"));     /* -1 -> null */
    ASSERT_STR_EQ(str(o[3], "reason"), "timeout after 30 s");
    ASSERT_STR_EQ(str(o[4], "event"), "run_end");
    ASSERT(is_null(o[4], "reason"));
    ASSERT(num(o[4], "ts") >= num(o[0], "ts"));
    for (int i = 0; i < 8; i++) cJSON_Delete(o[i]);

    /* Flower-format log line */
    snprintf(path, sizeof path, "%s/server_log.log", sub);
    text = slurp(path);
    ASSERT(text);
    regex_t re;
    ASSERT_OK(regcomp(&re,
                      "^INFO flwr [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2},[0-9]{3} "
                      "\\| test_results\\.c:[0-9]+ \\| FL finished in 12\\.50\n$",
                      REG_EXTENDED));
    int m = regexec(&re, text, 0, NULL, 0);
    regfree(&re);
    ASSERT_MSG(m == 0, "log line does not match Flower's format: %s", text);
    free(text);
    rm_rf(d);
}

static void t_client_events_and_generic(void)
{
    char err[PT_ERRLEN], path[512];
    pt_results *r = NULL;
    const char *d = mktmp();
    ASSERT(d);
    ASSERT_OK(pt_results_open(&r, d, "client_7", err));
    pt_client_info ci = {"7", "0/2", 100, 25, "reference", "fmnist-cnn", "fashion-mnist"};
    ASSERT_OK(pt_results_client_start(r, &ci));
    pt_client_stats s;
    pt_client_stats_init(&s);
    s.round = 3;
    s.wall_time = 2.5;
    s.cpu_process_percent = 180.0;
    s.cpu_system_percent = 95.5;
    s.examples = 100;
    s.peak_rss_bytes = 123456789;
    s.loss = 0.4;
    ASSERT_OK(pt_results_fit(r, &s));
    s.accuracy = 0.9;
    ASSERT_OK(pt_results_evaluate(r, &s));
    pt_config f = {0};
    ASSERT_OK(pt_config_set_string(&f, "note", "with \"quotes\" and \n newline"));
    ASSERT_OK(pt_config_set_string(&f, "event", "must be ignored"));
    ASSERT_OK(pt_config_set_bool(&f, "flag", 1));
    ASSERT_OK(pt_results_event(r, "custom", &f));
    pt_config_free(&f);
    ASSERT_OK(pt_results_client_end(r, 9.0, "ok", NULL));
    pt_results_close(r);

    snprintf(path, sizeof path, "%s/events.jsonl", d);
    char *text = slurp(path);
    ASSERT(text);
    cJSON *o[8] = {0};
    ASSERT_EQ_INT(parse_lines(text, o, 8), 5);
    free(text);
    ASSERT_STR_EQ(str(o[0], "source"), "client_7");
    ASSERT_STR_EQ(str(o[0], "partition"), "0/2");
    ASSERT_STR_EQ(str(o[1], "event"), "fit");
    ASSERT_NEAR(num(o[1], "cpu_process_percent"), 180.0, 1e-9);
    ASSERT_EQ_INT(num(o[1], "peak_rss_bytes"), 123456789);
    ASSERT(is_null(o[1], "accuracy"));
    ASSERT_STR_EQ(str(o[2], "event"), "evaluate");
    ASSERT_NEAR(num(o[2], "accuracy"), 0.9, 1e-12);
    ASSERT_STR_EQ(str(o[3], "event"), "custom");
    ASSERT_STR_EQ(str(o[3], "note"), "with \"quotes\" and \n newline");
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(o[3], "flag")));
    ASSERT_STR_EQ(str(o[4], "event"), "client_end");
    for (int i = 0; i < 8; i++) cJSON_Delete(o[i]);
    snprintf(path, sizeof path, "%s/client_7_log.log", d);
    struct stat st;
    ASSERT_OK(stat(path, &st));
    rm_rf(d);
}

/* Several processes append to one events.jsonl: every line stays whole. */
static void t_concurrent_appends(void)
{
    char err[PT_ERRLEN], path[512];
    const char *d = mktmp();
    ASSERT(d);
    enum { NPROC = 4, NLINES = 300 };
    for (int p = 0; p < NPROC; p++) {
        pid_t pid = fork();
        ASSERT(pid >= 0);
        if (pid == 0) {
            char src[32];
            pt_results *r = NULL;
            snprintf(src, sizeof src, "client_%d", p);
            if (pt_results_open(&r, d, src, err) != PT_OK) _exit(1);
            pt_config f = {0};
            char pad[600];
            memset(pad, 'a' + p, sizeof pad - 1);
            pad[sizeof pad - 1] = '\0';
            pt_config_set_string(&f, "pad", pad);
            for (int i = 0; i < NLINES; i++) {
                pt_config_set_int(&f, "i", i);
                if (pt_results_event(r, "tick", &f) != PT_OK) _exit(1);
            }
            pt_config_free(&f);
            pt_results_close(r);
            _exit(0);
        }
    }
    int ok = 1, st;
    for (int p = 0; p < NPROC; p++) {
        if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) ok = 0;
    }
    ASSERT(ok);
    snprintf(path, sizeof path, "%s/events.jsonl", d);
    char *text = slurp(path);
    ASSERT(text);
    int n = parse_lines(text, NULL, 0);
    free(text);
    ASSERT_EQ_INT(n, NPROC * NLINES);
    rm_rf(d);
}

static void t_open_errors(void)
{
    char err[PT_ERRLEN] = "";
    pt_results *r = (pt_results *)1;
    ASSERT_EQ_INT(pt_results_open(&r, "/tmp", "../evil", err), PT_ERR_INVAL);
    ASSERT(r == NULL);
    ASSERT_CONTAINS(err, "bad source name");
    ASSERT_EQ_INT(pt_results_open(&r, "/tmp", "", err), PT_ERR_INVAL);
    ASSERT_EQ_INT(pt_results_open(&r, "", "server", err), PT_ERR_INVAL);
    /* a regular file where a directory is needed */
    const char *d = mktmp();
    ASSERT(d);
    char f[300];
    snprintf(f, sizeof f, "%s/file", d);
    FILE *fp = fopen(f, "w");
    ASSERT(fp);
    fclose(fp);
    char sub[320];
    snprintf(sub, sizeof sub, "%s/sub", f);
    ASSERT_EQ_INT(pt_results_open(&r, sub, "server", err), PT_ERR_IO);
    ASSERT_CONTAINS(err, "file");
    ASSERT_EQ_INT(pt_results_round(NULL, NULL), PT_ERR_INVAL);
    PT_RINFO(NULL, "logging without a writer only echoes");
    rm_rf(d);
}


/* ---- reading back ------------------------------------------------------------- */

static void t_reader_runs_and_rounds(void)
{
    char err[PT_ERRLEN] = "", path[512];
    pt_results *r = NULL;
    const char *d = mktmp();
    ASSERT(d);
    ASSERT_OK(pt_results_open(&r, d, "server", err));
    for (int run = 0; run < 2; run++) { /* two runs appended to one file */
        pt_run_info info = {"FedAvg", 2, "openblas", "m", "ds", 3, NULL, NULL};
        ASSERT_OK(pt_results_run_start(r, &info));
        int order[] = {2, 1, 2}; /* out of order, and round 2 twice: the last wins */
        for (int i = 0; i < 3; i++) {
            pt_round_stats s;
            pt_round_stats_init(&s);
            s.round = order[i];
            s.round_time = 1.0 + i;
            s.accuracy_centralized = 0.5 + 0.1 * i + 0.01 * run;
            ASSERT_OK(pt_results_round(r, &s));
        }
    }
    pt_results_close(r);
    pt_runset set = {0};
    snprintf(path, sizeof path, "%s/events.jsonl", d);
    ASSERT_OK(pt_runset_load_file(&set, path, d, err));
    ASSERT_EQ_INT(set.n, 2);
    ASSERT_EQ_INT(set.runs[0].n_rounds, 2);
    ASSERT_EQ_INT(set.runs[0].rounds[0].round, 1);
    ASSERT_EQ_INT(set.runs[0].rounds[1].round, 2);
    ASSERT_NEAR(set.runs[0].rounds[1].accuracy_centralized, 0.7, 1e-12);
    char label[64];
    pt_runset_label(&set, 1, label, sizeof label);
    ASSERT_STR_EQ(label, "FedAvg #2");
    pt_run_summary sm;
    pt_run_summarize(&set.runs[1], &sm);
    ASSERT_NEAR(sm.final_accuracy, 0.71, 1e-12);
    ASSERT_NEAR(sm.best_accuracy, 0.71, 1e-12);
    ASSERT_EQ_INT(sm.best_round, 2);
    ASSERT_NEAR(sm.mean_round_time, (2.0 + 3.0) / 2, 1e-12);
    ASSERT_EQ_INT(sm.rounds_completed, 2);
    pt_runset_free(&set);
    /* load() errors */
    ASSERT_EQ_INT(pt_runset_load(&set, "/nonexistent/dir", err), PT_ERR_NOTFOUND);
    ASSERT_CONTAINS(err, "/nonexistent/dir");
    ASSERT_EQ_INT(pt_runset_load(&set, path, err), PT_ERR_INVAL); /* a file */
    ASSERT_CONTAINS(err, "not a directory");
    rm_rf(d);
}

/* The writer never writes a line the reader refuses: a round whose metrics
 * (client-chosen keys) would pass PT_RESULTS_MAX_LINE is written without them. */
static void t_round_line_within_reader_limit(void)
{
    char err[PT_ERRLEN] = "", path[512], key[PT_CONFIG_KEY_MAX + 1];
    pt_results *r = NULL;
    pt_config m = {0}, small = {0};
    const char *d = mktmp();
    ASSERT(d);
    memset(key, 'k', PT_CONFIG_KEY_MAX);
    key[PT_CONFIG_KEY_MAX] = 0;
    for (int i = 0; i < 4200; i++) { /* 4200 x 4 KiB keys: 17 MB of JSON */
        snprintf(key, 12, "%011d", i);
        key[11] = 'k';
        pt_config_set_double(&m, key, i);
    }
    pt_config_set_double(&small, "accuracy", 0.5);
    ASSERT_OK(pt_results_open(&r, d, "server", err));
    pt_run_info info = {"FedAvg", 2, "openblas", "m", "ds", 2, NULL, NULL};
    ASSERT_OK(pt_results_run_start(r, &info));
    for (int round = 1; round <= 2; round++) {
        pt_round_stats s;
        pt_round_stats_init(&s);
        s.round = round;
        s.accuracy_centralized = 0.5;
        s.metrics = round == 1 ? &m : &small; /* a small map is written whole */
        ASSERT_OK(pt_results_round(r, &s));
    }
    pt_results_close(r);
    snprintf(path, sizeof path, "%s/events.jsonl", d);
    char *txt = slurp(path);
    ASSERT(txt);
    ASSERT_CONTAINS(txt, "\"metrics_omitted\"");
    ASSERT_CONTAINS(txt, "\"metrics\":{\"accuracy\":0.5}");
    free(txt);
    pt_runset set = {0};
    ASSERT_OK(pt_runset_load_file(&set, path, d, err));
    ASSERT_EQ_INT(set.bad_lines, 0);
    ASSERT_EQ_INT(set.n, 1);
    ASSERT_EQ_INT(set.runs[0].n_rounds, 2);
    pt_runset_free(&set);
    pt_config_free(&m);
    pt_config_free(&small);
    rm_rf(d);
}

/* ---- system stats ---------------------------------------------------------- */

static volatile double sink;

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void t_cpu_busy(void)
{
    pt_cpu_sample s;
    double proc, sys;
    ASSERT_OK(pt_cpu_mark(&s));
    double w0 = pt_now(), c0 = thread_cpu();
    double end = w0 + 0.4, x = 0;
    while (pt_now() < end)
        for (int i = 0; i < 10000; i++) x += i * 0.5;
    sink = x;
    double ref = (thread_cpu() - c0) / (pt_now() - w0) * 100.0;
    ASSERT_OK(pt_cpu_since(&s, &proc, &sys));
    /* The only busy thread: the process figure equals this thread's share of
     * the wall time, whatever the machine's load. */
    ASSERT_MSG(fabs(proc - ref) <= 5 + 0.1 * ref, "busy loop: process %.1f%%, thread %.1f%%",
               proc, ref);
    ASSERT_MSG(proc > 5 && proc < 110, "busy loop: process CPU %.1f%%", proc);
    ASSERT_MSG(sys > 0 && sys <= 100, "busy loop: system %.1f%%", sys);
    /* With a core to ourselves it must be near 100%. */
    if (sys * pt_cpu_count() - proc < 40)
        ASSERT_MSG(proc > 85, "busy loop on an idle core: process CPU %.1f%%", proc);
}

static void t_cpu_sleep(void)
{
    pt_cpu_sample s;
    double proc, sys;
    ASSERT_OK(pt_cpu_mark(&s));
    pt_sleep(0.3, NULL);
    ASSERT_OK(pt_cpu_since(&s, &proc, &sys));
    ASSERT_MSG(proc >= 0 && proc < 10, "sleep: process CPU %.1f%%", proc);
    ASSERT(sys >= 0 && sys <= 100);
}

typedef struct spin_arg {
    double end, cpu;
} spin_arg;

static void *spin(void *arg)
{
    spin_arg *a = arg;
    double c0 = thread_cpu(), x = 0;
    while (pt_now() < a->end)
        for (int i = 0; i < 10000; i++) x += i * 0.25;
    sink = x;
    a->cpu = thread_cpu() - c0;
    return NULL;
}

/* Two busy threads: the process figure counts both (may exceed 100%, like
 * psutil's Process.cpu_percent). */
static void t_cpu_two_threads(void)
{
    pt_cpu_sample s;
    double proc, sys;
    pthread_t th;
    double w0 = pt_now();
    spin_arg a = {w0 + 0.5, 0}, b = {w0 + 0.5, 0};
    ASSERT_OK(pt_cpu_mark(&s));
    ASSERT_OK(pthread_create(&th, NULL, spin, &a));
    spin(&b);
    pthread_join(th, NULL);
    pt_cpu_since(&s, &proc, &sys);
    double ref = (a.cpu + b.cpu) / (pt_now() - w0) * 100.0;
    ASSERT_MSG(fabs(proc - ref) <= 5 + 0.1 * ref, "two threads: process %.1f%%, threads %.1f%%",
               proc, ref);
    /* Only when other processes left us most of both cores must we see
     * clearly more than one core's worth. */
    double others = sys * pt_cpu_count() - proc;
    if (pt_cpu_count() >= 2 && others < 40)
        ASSERT_MSG(proc > 130, "two threads: process CPU %.1f%%", proc);
    else
        printf("note: machine busy (others %.0f%%), two-thread figure %.1f%% only checked "
               "against the threads' own CPU time\n",
               others, proc);
}

static void t_rss(void)
{
    int64_t rss0 = pt_rss_bytes(), peak0 = pt_peak_rss_bytes();
    ASSERT(rss0 > 0);
    ASSERT(peak0 >= rss0 / 2);
    size_t n = 64u << 20;
    char *b = malloc(n);
    ASSERT(b);
    for (size_t i = 0; i < n; i += 4096) ((volatile char *)b)[i] = 1; /* not elided */
    int64_t rss1 = pt_rss_bytes(), peak1 = pt_peak_rss_bytes();
    ASSERT_MSG(rss1 >= rss0 + (int64_t)(n * 0.9), "rss %lld -> %lld", (long long)rss0,
               (long long)rss1);
    ASSERT(peak1 >= rss1);
    free(b);
    ASSERT(pt_peak_rss_bytes() >= peak1 - (1 << 20)); /* kernel counters are approximate */
    ASSERT_EQ_INT(pt_cpu_since(NULL, NULL, NULL), PT_ERR_INVAL);
}

/* A key repeated in one object is refused wherever Petal reads JSON; an
 * event line with one is malformed (counted, not read). */
static void t_repeated_keys(void)
{
    char err[PT_ERRLEN];
    cJSON *j = pt_json_parse("{\"a\":1,\"b\":{\"c\":[{\"d\":1,\"d\":2}]}}", 33, err);
    ASSERT(j == NULL);
    ASSERT_CONTAINS(err, "the key 'd' appears twice in one object");
    j = pt_json_parse("{\"a\":1,\"b\":[{\"a\":2},{\"a\":3}]}", 29, err);
    ASSERT(j != NULL); /* the same key in different objects is fine */
    cJSON_Delete(j);
    char dir[] = "/tmp/petal-rk-XXXXXX", path[64];
    ASSERT(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"ts\":1,\"source\":\"server\",\"event\":\"run_start\",\"strategy\":\"FedAvg\"}\n"
          "{\"ts\":2,\"source\":\"server\",\"event\":\"round\",\"round\":1,"
          "\"accuracy_centralized\":0.5,\"accuracy_centralized\":0.9}\n"
          "{\"ts\":3,\"source\":\"server\",\"event\":\"round\",\"round\":2,"
          "\"accuracy_centralized\":0.6}\n",
          f);
    fclose(f);
    pt_runset set = {0};
    ASSERT_OK(pt_runset_load(&set, dir, err));
    ASSERT_EQ_INT(set.bad_lines, 1);
    ASSERT_EQ_INT(set.runs[0].n_rounds, 1);
    ASSERT_EQ_INT(set.runs[0].rounds[0].round, 2);
    pt_runset_free(&set);
    unlink(path);
    rmdir(dir);
}

/* Rounds in any order, some twice: sorted, the last record of a round wins. */
static void t_rounds_out_of_order(void)
{
    char err[PT_ERRLEN], dir[] = "/tmp/petal-ro-XXXXXX", path[64];
    ASSERT(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    FILE *f = fopen(path, "w");
    int order[6] = {5, 3, 1, 4, 3, 2};
    for (int i = 0; i < 6; i++)
        fprintf(f, "{\"ts\":%d,\"source\":\"server\",\"event\":\"round\",\"round\":%d,"
                   "\"round_time\":%d}\n", i + 1, order[i], 10 * (i + 1));
    fclose(f);
    pt_runset set = {0};
    ASSERT_OK(pt_runset_load(&set, dir, err));
    ASSERT_EQ_INT(set.runs[0].n_rounds, 5);
    for (int k = 0; k < 5; k++) ASSERT_EQ_INT(set.runs[0].rounds[k].round, k + 1);
    ASSERT_NEAR(set.runs[0].rounds[2].round_time, 50, 0); /* round 3: the second record */
    pt_runset_free(&set);
    unlink(path);
    rmdir(dir);
}

TEST_MAIN(TEST(t_repeated_keys), TEST(t_rounds_out_of_order), TEST(t_server_events),
          TEST(t_reader_runs_and_rounds), TEST(t_round_line_within_reader_limit),
          TEST(t_client_events_and_generic), TEST(t_concurrent_appends),
          TEST(t_open_errors), TEST(t_cpu_busy), TEST(t_cpu_sleep), TEST(t_cpu_two_threads),
          TEST(t_rss))
