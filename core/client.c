/* client.c - the Petal client agent: Flower's start_client loop over the
 * grpc-bidi protocol. Connects with gRPC's connection backoff, then answers
 * exactly one ClientMessage per ServerMessage: GetParameters, GetProperties,
 * Fit (train the nn model on this client's partition), Evaluate (local
 * validation split), and on ReconnectIns sends DisconnectRes, half-closes
 * and either reconnects after `seconds` or returns.
 *
 * Stay or leave. An instruction the client will not or cannot carry out is
 * answered with a failure status naming the reason, and the client waits for
 * the next one: a config value outside the owner's limits (epochs, batch
 * size) or malformed (server_round, lr, ...), parameters that do not fit the
 * model (count, shapes) or hold NaN/infinity, training that diverges. The
 * client leaves (returns an error; with --rejoin it first joins again) when
 * the conversation itself is broken: the connection or the call ends, a
 * keepalive or transfer deadline passes, a message is undecodable or over
 * max_message, the server runs ahead of the replies past max_queue, a
 * ReconnectIns asks for a wait over max_reconnect_wait, or the stop flag is
 * raised (SIGINT/SIGTERM). */
#include "agent_int.h"
#include "contract_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdata.h"
#include "pnet.h"
#include "pnn.h"
#include "results_int.h"

typedef struct cli {
    const pt_client_opts *o;
    pt_results *res;
    pnn_model *model;
    pd_dataset train, val;
    pt_params w; /* view of the model's weights */
    uint8_t *out;
    size_t outcap;
    pnet_client *net;
    char id[72];
    double last_poll;
    int round; /* fit/evaluate count, for the results (Flower sends no round) */
    int fits, evals;
    int fit_batch; /* largest training batch so far (0: none yet) */
    int max_epochs, max_batch;
    double max_reconnect_wait;
    size_t max_message;
    int conn_msgs;    /* messages received on this connection */
    int net_rc;       /* the connection failed during a computation (0 = fine) */
    char net_err[PT_ERRLEN];
    pt_contract_state contract; /* the server's classes and split, once agreed */
    int contract_noted;         /* "no contract" said once */
} cli;

#define MAX_EPOCHS_DEFAULT 100
#define MAX_BATCH_DEFAULT 512
#define MAX_RECONNECT_WAIT_DEFAULT 600.0
#define MAX_QUEUE_DEFAULT 4
#define MESSAGE_HEADROOM ((size_t)4 << 20) /* config maps and framing around the tensors */
#define POLL_EVERY_S 2.0                   /* service the connection during computations */

#define CLOG(c, ...) PT_RINFO((c)->res, __VA_ARGS__)
#define CWARN(c, ...) PT_RWARN((c)->res, __VA_ARGS__)
#define CDEBUG(c, ...) PT_RLOG((c)->res, PT_LOG_DEBUG, __VA_ARGS__)

void pt_client_opts_init(pt_client_opts *o)
{
    memset(o, 0, sizeof *o);
    o->server = "127.0.0.1:8080";
    o->model = "fmnist-cnn";
    o->dataset = "fashion-mnist";
    o->part = 0;
    o->num_parts = 1;
    o->partitioner = "iid";
    o->val_split = 0.25;
    o->connect_timeout = 60;
    o->seed = 1337;
}

/* ---- replies ------------------------------------------------------------------- */

static int send_reply(cli *c, const pnet_client_out *m, char *err)
{
    size_t sz, w;
    int rc = pnet_client_out_size(m, &sz, err);
    if (rc) return rc;
    if (sz > c->outcap) {
        uint8_t *nb = realloc(c->out, sz);
        if (!nb) return pt_seterr(err, PT_ERR_NOMEM, "reply of %zu bytes", sz);
        c->out = nb;
        c->outcap = sz;
    }
    if ((rc = pnet_client_out_pack(m, c->out, c->outcap, &w, err))) return rc;
    double t0 = pt_now();
    rc = pnet_client_send(c->net, c->out, w, err);
    CDEBUG(c, "Sent: %s (%zu bytes in %.1f ms)", pnet_cmsg_name(m->type), w,
           (pt_now() - t0) * 1e3);
    return rc;
}

/* splitmix64's finaliser: a well-mixed 64-bit function of x. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static int stopping(const cli *c)
{
    return c->o->stop && *c->o->stop;
}

/* During a computation: answer PINGs, move flow control, run the keepalive
 * and transfer clocks every POLL_EVERY_S. Returns 0, or 1 when the
 * connection has failed (c->net_rc, c->net_err: the computation is useless). */
static int service_net(cli *c)
{
    double now = pt_now();
    if (now - c->last_poll < POLL_EVERY_S) return 0;
    c->last_poll = now;
    int rc = pnet_client_poll(c->net, 0, c->net_err);
    if (rc >= 0 || rc == PT_ERR_TIMEOUT) return 0;
    c->net_rc = rc;
    return 1;
}

static int progress_cb(const pnn_progress *p, void *user)
{
    cli *c = user;
    (void)p;
    if (stopping(c)) return 1;
    return service_net(c);
}

/* An integer config value in [lo, hi] (malformed otherwise) and at most
 * limit (the owner's, named by opt). */
static int config_int(const pt_config *cfg, const char *key, int def, int lo, int hi, int limit,
                      const char *opt, int *out, char *err)
{
    double v;
    int rc = pt_config_get_number(cfg, key, &v);
    if (rc == PT_ERR_NOTFOUND) {
        *out = def;
        return PT_OK;
    }
    /* range first: (int) of a NaN or out-of-range double is undefined */
    if (rc || !(v >= lo && v <= hi) || v != floor(v))
        return pt_seterr(err, PT_ERR_INVAL, "config '%s' must be an integer in [%d, %d]", key, lo,
                         hi);
    if (v > limit)
        return pt_seterr(err, PT_ERR_RANGE, "config '%s' = %.0f is over this client's limit of "
                         "%d (%s)", key, v, limit, opt);
    *out = (int)v;
    return PT_OK;
}

static int config_real(const pt_config *cfg, const char *key, double def, double lo, double hi,
                       double *out, char *err)
{
    double v;
    int rc = pt_config_get_number(cfg, key, &v);
    if (rc == PT_ERR_NOTFOUND) {
        *out = def;
        return PT_OK;
    }
    if (rc || !isfinite(v) || v < lo || v > hi)
        return pt_seterr(err, PT_ERR_INVAL, "config '%s' must be a number in [%g, %g]", key, lo,
                         hi);
    *out = v;
    return PT_OK;
}

static void stats_done(cli *c, const pt_cpu_sample *mark, double t0, int64_t examples,
                       double loss, double acc, const pt_config *metrics, int is_fit)
{
    pt_client_stats st;
    pt_client_stats_init(&st);
    st.round = c->round;
    st.wall_time = pt_now() - t0;
    pt_cpu_since(mark, &st.cpu_process_percent, &st.cpu_system_percent);
    st.examples = examples;
    st.peak_rss_bytes = pt_peak_rss_bytes();
    st.loss = loss;
    st.accuracy = acc;
    st.metrics = metrics;
    if (is_fit) pt_results_fit(c->res, &st);
    else pt_results_evaluate(c->res, &st);
}

/* Answer an instruction with a failure status (Flower counts the failure)
 * and stay. */
static int refuse(cli *c, pnet_client_out *r, int code, const char *what, const char *why,
                  char *err)
{
    CWARN(c, "%s refused: %s", what, why);
    r->status_code = code;
    r->status_message = why;
    r->params = NULL;
    r->num_examples = 0;
    r->loss = 0;
    r->metrics = NULL;
    return send_reply(c, r, err);
}

/* The parameters of a FitIns/EvaluateIns: the model's count and shapes,
 * finite values. Checked whole before anything is written. */
#define INS_PARAM_FLAGS (PNET_NPY_ERR_OVERFLOW | PNET_NPY_FINITE)

/* server_round: for the results and the training seed only, but an integer
 * all the same (a NaN or 1e300 must not reach an (int) cast). */
static int ins_round(cli *c, const pnet_server_in *in, int count, char *e)
{
    int rc = config_int(&in->config, "server_round", count, 0, INT32_MAX, INT32_MAX,
                        "server_round", &c->round, e);
    return rc;
}

static int all_finite(const pt_params *p)
{
    for (size_t i = 0; i < p->n; i++)
        for (size_t k = 0; k < p->t[i].numel; k++)
            if (!isfinite(p->t[i].data[k])) return 0;
    return 1;
}

static int do_fit(cli *c, const pnet_server_in *in, char *err)
{
    char e[PT_ERRLEN], e2[PT_ERRLEN];
    int epochs, batch, rc;
    double lr, mu, t0 = pt_now();
    pt_cpu_sample mark;
    pt_config metrics = {0};
    pnet_client_out r = {0};
    pnn_epoch_stats *st = NULL;
    pt_cpu_mark(&mark);
    c->fits++;
    r.type = PNET_CMSG_FIT;
    r.status_message = "Success";
    /* Petal's keys, or the names Flower's examples use */
    const char *k_epochs = pt_config_get(&in->config, "epochs") ? "epochs" : "local_epochs";
    const char *k_lr = pt_config_get(&in->config, "lr") ? "lr" : "learning_rate";
    if ((rc = ins_round(c, in, c->fits, e)) ||
        (rc = config_int(&in->config, k_epochs, 1, 0, INT32_MAX, c->max_epochs, "--max-epochs",
                         &epochs, e)) ||
        (rc = config_int(&in->config, "batch_size", 32, 1, INT32_MAX, c->max_batch,
                         "--max-batch", &batch, e)) ||
        (rc = config_real(&in->config, k_lr, 1e-3, 0, 1e6, &lr, e)) ||
        (rc = config_real(&in->config, "proximal_mu", 0, 0, 1e12, &mu, e)))
        return refuse(c, &r, PNET_CODE_FIT_NOT_IMPLEMENTED, "fit", e, err);
    if ((rc = pnet_params_check(&in->params, &c->w, INS_PARAM_FLAGS, e2))) {
        if (rc == PT_ERR_NOMEM) return pt_seterr(err, rc, "FitIns parameters: %s", e2);
        pt_seterr(e, rc, "FitIns parameters do not fit this client's model: %s", e2);
        return refuse(c, &r, PNET_CODE_FIT_NOT_IMPLEMENTED, "fit", e, err);
    }
    /* Training must depend only on (seed, round, partition) and the weights
     * received, never on this process's history (a restarted or resumed
     * federation then trains bit-identically): fresh optimizer and dropout
     * state from that seed (the weights are overwritten just below). */
    uint64_t fit_seed = mix64(mix64(c->o->seed ^ 0x66697473ull) + (uint64_t)c->round) +
                        (uint64_t)c->o->part;
    if (!c->o->keep_optimizer) pnn_model_init_weights(c->model, mix64(fit_seed));
    if ((rc = pnet_params_decode(&in->params, &c->w, INS_PARAM_FLAGS, e)))
        return pt_seterr(err, rc, "FitIns parameters: %s", e);
    double loss = NAN, acc = NAN;
    if (epochs > 0) {
        pnn_fit_opts fo;
        pnn_fit_opts_init(&fo);
        fo.epochs = epochs;
        fo.batch_size = batch;
        if (batch > c->fit_batch) c->fit_batch = batch;
        fo.learning_rate = (float)lr;
        fo.proximal_mu = (float)mu;
        fo.shuffle_seed = fit_seed;
        fo.progress = progress_cb;
        fo.progress_user = c;
        if (!(st = calloc((size_t)epochs, sizeof *st))) return PT_ERR_NOMEM;
        c->last_poll = pt_now();
        rc = pnn_fit(c->model, c->train.x, c->train.y, c->train.n, &fo, st, e);
        if (rc == PNN_ERR_CANCELLED) {
            free(st);
            if (stopping(c)) return pt_seterr(err, PT_ERR_INTERRUPTED, "interrupted");
            return pt_seterr(err, c->net_rc, "connection lost while training: %s", c->net_err);
        }
        if (rc == PNN_ERR_NUMERIC) {
            free(st);
            pt_seterr(e2, rc, "training diverged: %s", e);
            return refuse(c, &r, PNET_CODE_FIT_NOT_IMPLEMENTED, "fit", e2, err);
        }
        if (rc) {
            free(st);
            return pt_seterr(err, PT_ERR_NN, "training failed: %s", e);
        }
        loss = st[epochs - 1].loss;
        acc = st[epochs - 1].accuracy;
        free(st);
        if (!all_finite(&c->w))
            return refuse(c, &r, PNET_CODE_FIT_NOT_IMPLEMENTED, "fit",
                          "training diverged: the weights are not finite", err);
        pt_config_set_double(&metrics, "loss", loss);
        pt_config_set_double(&metrics, "accuracy", acc);
    }
    r.params = &c->w;
    r.num_examples = (int64_t)c->train.n;
    r.metrics = &metrics;
    rc = send_reply(c, &r, err);
    CDEBUG(c, "fit: %d epochs on %zu examples, loss %.6g, accuracy %.4f", epochs, c->train.n,
           loss, acc);
    stats_done(c, &mark, t0, (int64_t)c->train.n, loss, acc, &metrics, 1);
    pt_config_free(&metrics);
    return rc;
}

/* pnn_evaluate over the validation split in chunks of about half a second,
 * so the stop flag and the connection are looked after meanwhile. */
static int evaluate_split(cli *c, int batch, double *loss, double *acc, char *err)
{
    const size_t n = c->val.n, in = pnn_input_size(c->model);
    size_t done = 0, correct = 0, chunk = (size_t)batch;
    double lsum = 0;
    char e[PT_ERRLEN];
    c->last_poll = pt_now();
    while (done < n) {
        if (stopping(c)) return pt_seterr(err, PT_ERR_INTERRUPTED, "interrupted");
        if (service_net(c))
            return pt_seterr(err, c->net_rc, "connection lost while evaluating: %s", c->net_err);
        size_t k = n - done < chunk ? n - done : chunk;
        double l, a, t0 = pt_now();
        int rc = pnn_evaluate(c->model, c->val.x + done * in, c->val.y + done, k, batch, &l, &a,
                              e);
        if (rc) return pt_seterr(err, PT_ERR_NN, "evaluation failed: %s", e);
        lsum += l * (double)k;
        correct += (size_t)llround(a * (double)k);
        done += k;
        double dt = pt_now() - t0;
        if (dt < 0.25 && chunk < n) chunk *= 2;
        else if (dt > 1.0 && chunk >= 2 * (size_t)batch) chunk /= 2;
    }
    *loss = n ? lsum / (double)n : 0;
    *acc = n ? (double)correct / (double)n : 0;
    return PT_OK;
}

static int do_evaluate(cli *c, const pnet_server_in *in, char *err)
{
    char e[PT_ERRLEN], e2[PT_ERRLEN];
    int batch, rc;
    double loss = 0, acc = 0, t0 = pt_now();
    pt_cpu_sample mark;
    pt_config metrics = {0};
    pnet_client_out r = {0};
    pt_cpu_mark(&mark);
    c->evals++;
    r.type = PNET_CMSG_EVALUATE;
    r.status_message = "Success";
    if ((rc = ins_round(c, in, c->evals, e)) ||
        (rc = config_int(&in->config, "batch_size", 32, 1, INT32_MAX, c->max_batch,
                         "--max-batch", &batch, e)))
        return refuse(c, &r, PNET_CODE_EVALUATE_NOT_IMPLEMENTED, "evaluate", e, err);
    if ((rc = pnet_params_check(&in->params, &c->w, INS_PARAM_FLAGS, e2))) {
        if (rc == PT_ERR_NOMEM) return pt_seterr(err, rc, "EvaluateIns parameters: %s", e2);
        pt_seterr(e, rc, "EvaluateIns parameters do not fit this client's model: %s", e2);
        return refuse(c, &r, PNET_CODE_EVALUATE_NOT_IMPLEMENTED, "evaluate", e, err);
    }
    if ((rc = pnet_params_decode(&in->params, &c->w, INS_PARAM_FLAGS, e)))
        return pt_seterr(err, rc, "EvaluateIns parameters: %s", e);
    /* The batch size does not change the results: once training has sized the
     * model's buffers, evaluating in larger batches would only grow every
     * activation and gradient buffer (a seed-cnn client: ~0.5 GB at 128) */
    if (c->fit_batch && batch > c->fit_batch) batch = c->fit_batch;
    if (c->val.n && (rc = evaluate_split(c, batch, &loss, &acc, err))) return rc;
    if (!isfinite(loss))
        return refuse(c, &r, PNET_CODE_EVALUATE_NOT_IMPLEMENTED, "evaluate",
                      "the evaluation loss is not finite", err);
    pt_config_set_double(&metrics, "accuracy", acc);
    r.loss = (float)loss;
    r.num_examples = (int64_t)c->val.n;
    r.metrics = &metrics;
    rc = send_reply(c, &r, err);
    CDEBUG(c, "evaluate: loss %.6g, accuracy %.4f on %zu examples", loss, acc, c->val.n);
    stats_done(c, &mark, t0, (int64_t)c->val.n, loss, acc, &metrics, 0);
    pt_config_free(&metrics);
    return rc;
}

/* ---- the federation's data contract --------------------------------------------- */

/* Before fit/evaluate: follow the server's classes and held-out split
 * (contract_int.h). A client whose data cannot follow them answers the
 * instruction with a failure status giving the reason (the server logs it)
 * and stops with that reason. */
static int agree_data(cli *c, const pnet_server_in *in, pnet_cmsg_type reply, char *err)
{
    pt_contract_outcome out;
    char e[PT_ERRLEN];
    int rc = pt_contract_apply(&c->contract, &in->config, &c->train, &c->val, &out, e);
    if (!rc) {
        if (out.note[0]) {
            pt_config f = {0};
            CLOG(c, "data contract: %s", out.note);
            pt_config_set_int(&f, "classes", c->train.nclasses);
            pt_config_set_int(&f, "train_examples", (int64_t)c->train.n);
            pt_config_set_int(&f, "heldout_excluded", (int64_t)out.excluded);
            pt_results_event(c->res, "data_contract", &f);
            pt_config_free(&f);
        }
        if (!out.present && !c->contract_noted) {
            CLOG(c, "the server sent no data contract: labels follow this client's own "
                    "classes (%d) and split", c->train.nclasses);
            c->contract_noted = 1;
        }
        return PT_OK;
    }
    pnet_client_out r = {0};
    r.type = reply;
    r.status_code = reply == PNET_CMSG_FIT ? PNET_CODE_FIT_NOT_IMPLEMENTED
                                           : PNET_CODE_EVALUATE_NOT_IMPLEMENTED;
    r.status_message = e;
    char e2[PT_ERRLEN];
    if (send_reply(c, &r, e2)) CDEBUG(c, "refusal not sent: %s", e2);
    pnet_client_close(c->net, 2000);
    return pt_seterr(err, rc, "refused the server's data contract: %s", e);
}

/* ---- the loop ------------------------------------------------------------------- */

/* Serve one connection. Returns PT_OK with *reconnect_after = -1 to stop,
 * or >= 0 seconds to reconnect after. */
static int serve(cli *c, double *reconnect_after, char *err)
{
    for (;;) {
        uint8_t *buf;
        size_t len;
        pnet_server_in in;
        char e[PT_ERRLEN];
        int rc;
        if (stopping(c)) return pt_seterr(err, PT_ERR_INTERRUPTED, "interrupted");
        /* no timeout of our own: a live server may be silent for long (others
           train); the transport's keepalive and deadlines and the stop flag end
           the wait otherwise */
        rc = pnet_client_recv(c->net, &buf, &len, -1, e);
        if (rc == PT_ERR_CLOSED && pnet_client_status(c->net, NULL) == PNET_GRPC_UNAUTHENTICATED)
            return pt_seterr(err, PT_ERR_AUTH, "the server refused this client: %s (check "
                             "--auth-token-file / PETAL_AUTH_TOKEN)", e);
        if (rc == PT_ERR_CLOSED)
            return pt_seterr(err, rc, "the server ended the stream without ReconnectIns: %s", e);
        if (rc == PT_ERR_INTERRUPTED) return pt_seterr(err, rc, "interrupted");
        if (rc)
            return pt_seterr(err, rc, "%s%s", rc == PT_ERR_NET || rc == PT_ERR_TLS ?
                             "connection lost: " : "", e);
        c->conn_msgs++;
        if ((rc = pnet_server_in_decode(buf, len, NULL, &in, e)))
            return pt_seterr(err, rc, "undecodable ServerMessage: %s", e);
        CDEBUG(c, "Received: %s message", pnet_smsg_name(in.type));
        switch (in.type) {
        case PNET_SMSG_RECONNECT: {
            pnet_client_out r = {0};
            long long secs = (long long)in.seconds;
            int over = secs > 0 && (double)secs > c->max_reconnect_wait;
            r.type = PNET_CMSG_DISCONNECT;
            r.reason = over ? PNET_REASON_UNKNOWN
                       : in.seconds > 0 ? PNET_REASON_RECONNECT : PNET_REASON_ACK;
            *reconnect_after = secs > 0 ? (double)secs : -1;
            rc = send_reply(c, &r, e);
            if (rc) CDEBUG(c, "DisconnectRes not sent: %s", e);
            if (!over) pnet_client_close(c->net, 2000); /* the server's trailers */
            pnet_server_in_free(&in);
            if (over)
                return pt_seterr(err, PT_ERR_RANGE, "the server asked to reconnect after %lld s, "
                                 "over this client's limit of %g s (--max-reconnect-wait)",
                                 secs, c->max_reconnect_wait);
            return PT_OK;
        }
        case PNET_SMSG_GET_PARAMETERS: {
            pnet_client_out r = {0};
            r.type = PNET_CMSG_GET_PARAMETERS;
            r.status_message = "Success";
            r.params = &c->w;
            rc = send_reply(c, &r, err);
            break;
        }
        case PNET_SMSG_GET_PROPERTIES: {
            pnet_client_out r = {0};
            pt_config props = {0};
            pt_config_set_string(&props, "client_id", c->id);
            pt_config_set_int(&props, "train_examples", (int64_t)c->train.n);
            pt_config_set_int(&props, "val_examples", (int64_t)c->val.n);
            pt_config_set_string(&props, "backend", pnn_backend_name((pnn_backend)c->o->backend));
            r.type = PNET_CMSG_GET_PROPERTIES;
            r.status_message = "Success";
            r.metrics = &props;
            rc = send_reply(c, &r, err);
            pt_config_free(&props);
            break;
        }
        case PNET_SMSG_FIT:
            if (!(rc = agree_data(c, &in, PNET_CMSG_FIT, err))) rc = do_fit(c, &in, err);
            break;
        case PNET_SMSG_EVALUATE:
            if (!(rc = agree_data(c, &in, PNET_CMSG_EVALUATE, err)))
                rc = do_evaluate(c, &in, err);
            break;
        default:
            rc = pt_seterr(err, PT_ERR_PROTO, "ServerMessage without a known member");
            break;
        }
        pnet_server_in_free(&in);
        if (rc) return rc;
    }
}

static int load_data(cli *c, char *err)
{
    const pt_client_opts *o = c->o;
    pd_open_opts po = pd_open_opts_default();
    pd_dataset test = {0};
    char e[PT_ERRLEN];
    int h, w, ch, rc;
    pnn_input_shape(c->model, &h, &w, &ch);
    po.h = h;
    po.w = w;
    po.c = ch;
    po.val_split = o->val_split;
    po.seed = o->seed;
    po.limit = o->limit;
    po.test_limit = o->eval_limit;
    po.max_pixels = o->max_image_pixels;
    po.max_scans = o->max_jpeg_scans;
    po.partition = o->partitioner;
    po.num_parts = o->num_parts;
    po.part = o->part;
    po.test_share = 1; /* decode only this client's share of the held-out split */
    po.quiet = 1;
    pd_split_info si;
    po.split_info = &si;
    if ((rc = pd_open(&c->train, &test, o->dataset, &po, e)))
        return pt_seterr(err, rc, "dataset: %s", e);
    c->contract.own_folder = !si.own_test_set;
    c->contract.own_list_hash = si.list_hash;
    pd_split_info_free(&si);
    if (c->train.n == 0) {
        pd_dataset_free(&test);
        return pt_seterr(err, PT_ERR_RANGE, "partition %d/%d of '%s' holds no training examples",
                         o->part, o->num_parts, o->dataset);
    }
    if (c->train.nclasses > pnn_num_classes(c->model)) {
        pd_dataset_free(&test);
        return pt_seterr(err, PT_ERR_MISMATCH, "dataset has %d classes, model outputs %d",
                         c->train.nclasses, pnn_num_classes(c->model));
    }
    /* local validation data: this client's iid share of the held-out split
     * (pd_open kept only that; empty when the split is smaller than the
     * number of clients) */
    if (test.n) c->val = test;
    else pd_dataset_free(&test);
    return PT_OK;
}

/* The owner's limits, with their defaults; the transport's security. */
static int limits(cli *c, char *err)
{
    const pt_client_opts *o = c->o;
    int tls = o->tls || o->tls_ca || o->tls_cert;
    c->max_epochs = o->max_epochs > 0 ? o->max_epochs : MAX_EPOCHS_DEFAULT;
    c->max_batch = o->max_batch > 0 ? o->max_batch : MAX_BATCH_DEFAULT;
    c->max_reconnect_wait = o->max_reconnect_wait > 0 ? o->max_reconnect_wait
                                                      : MAX_RECONNECT_WAIT_DEFAULT;
    /* a FitIns is this model's tensors and a config map: twice the float32
       size (float64 tensors are accepted) and some room; a bigger message is
       not meant for this client */
    size_t auto_max = 2 * pnet_params_packed_size(&c->w) + MESSAGE_HEADROOM;
    c->max_message = o->max_message ? o->max_message : auto_max;
    if (c->max_message > UINT32_MAX) c->max_message = UINT32_MAX;
    if (!tls && o->require_tls)
        return pt_seterr(err, PT_ERR_INVAL, "--require-tls: the connection to %s would be "
                         "cleartext h2c; give --tls-ca FILE (or --tls)", o->server);
    if (!tls && o->auth_token)
        CWARN(c, "the auth token goes to %s over cleartext h2c: anyone on the path can read "
              "it and join as this client; use --tls-ca (and --require-tls to refuse "
              "cleartext)", o->server);
    CDEBUG(c, "limits: epochs %d, batch %d, reconnect wait %g s, message %zu bytes, queue %d",
           c->max_epochs, c->max_batch, c->max_reconnect_wait, c->max_message,
           o->max_queue > 0 ? o->max_queue : MAX_QUEUE_DEFAULT);
    return PT_OK;
}

/* Errors after which joining again may help (--rejoin): the server or the
 * connection went away, or a deadline passed. */
static int rejoinable(int rc)
{
    return rc == PT_ERR_CLOSED || rc == PT_ERR_NET || rc == PT_ERR_TIMEOUT;
}

/* Connect, serve, and join again after ReconnectIns or (with --rejoin) a lost
 * server. Every reconnection waits for gRPC's connection backoff, which
 * starts again only after a connection that carried a message: a server that
 * accepts and drops gets ever slower attempts, all within the rejoin window
 * counted from the last useful connection. */
static int join_and_serve(cli *c, char *err)
{
    const pt_client_opts *o = c->o;
    char e[PT_ERRLEN];
    pnet_backoff bo = {0};
    int rejoining = 0, rc;
    double lost_at = 0;
    for (;;) {
        pnet_client_opts co = {0};
        double again = -1;
        co.address = o->server;
        co.tls = o->tls || o->tls_ca || o->tls_cert;
        co.tls_ca = o->tls_ca;
        co.server_name = o->server_name;
        co.tls_cert = o->tls_cert;
        co.tls_key = o->tls_key;
        co.auth_token = o->auth_token;
        co.stop = o->stop;
        co.backoff = &bo;
        co.max_message = c->max_message;
        co.max_queue = o->max_queue > 0 ? o->max_queue : MAX_QUEUE_DEFAULT;
        co.keepalive_time_s = o->keepalive;
        co.keepalive_timeout_s = o->keepalive_timeout;
        co.transfer_timeout_s = o->transfer_timeout;
        co.connect_deadline_s = o->connect_timeout > 0 ? o->connect_timeout : -1;
        if (rejoining) {
            co.connect_deadline_s = o->rejoin - (pt_now() - lost_at);
            if (co.connect_deadline_s <= 0)
                return pt_seterr(err, PT_ERR_TIMEOUT, "the server at %s was not back within "
                                 "--rejoin %g s: %s", o->server, o->rejoin, e);
        }
        if ((rc = pnet_client_connect(&c->net, &co, e))) {
            if (rc == PT_ERR_INTERRUPTED) return pt_seterr(err, rc, "interrupted");
            return pt_seterr(err, rc, "cannot join %s: %s", o->server, e);
        }
        if (co.tls)
            CLOG(c, "Opened secure gRPC connection using certificates");
        else
            CLOG(c, "Opened insecure gRPC connection (no certificates were passed)");
        c->conn_msgs = 0;
        rc = serve(c, &again, err);
        pnet_client_free(c->net);
        c->net = NULL;
        if (c->conn_msgs) pnet_backoff_reset(&bo);
        if (rc && o->rejoin > 0 && rejoinable(rc) && !stopping(c)) {
            if (!rejoining || c->conn_msgs) lost_at = pt_now();
            rejoining = 1;
            pt_seterr(e, rc, "%s", err);
            double wait = pnet_backoff_next(&bo), left = o->rejoin - (pt_now() - lost_at);
            CWARN(c, "%s; joining again in %.1f s (for up to %.0f s more)", err, wait, left);
            pt_sleep(wait < left ? wait : left, o->stop);
            continue;
        }
        if (rc) return rc;
        rejoining = 0;
        if (again < 0) {
            CLOG(c, "Disconnect and shut down");
            return PT_OK;
        }
        CLOG(c, "Disconnect, then re-establish connection after %g second(s)", again);
        pt_sleep(again, o->stop);
        if (stopping(c)) return pt_seterr(err, PT_ERR_INTERRUPTED, "interrupted");
    }
}

int pt_client_run(const pt_client_opts *o, char *err)
{
    cli C, *c = &C;
    char e[PT_ERRLEN], src[128];
    int rc;
    double t_start = pt_now();
    pnn_opts no;
    memset(c, 0, sizeof *c);
    c->o = o;
    if (o->num_parts < 1 || o->part < 0 || o->part >= o->num_parts)
        return pt_seterr(err, PT_ERR_INVAL, "partition %d/%d is out of range", o->part,
                         o->num_parts);
    snprintf(c->id, sizeof c->id, "%s", o->id && *o->id ? o->id : "");
    if (!*c->id) snprintf(c->id, sizeof c->id, "%d", o->part);
    snprintf(src, sizeof src, "client_%.64s", c->id);
    if (o->out_dir && (rc = pt_results_open(&c->res, o->out_dir, src, err))) return rc;
    pnn_opts_init(&no);
    no.backend = (pnn_backend)o->backend;
    no.threads = o->threads > 0 ? o->threads : 1;
    no.seed = o->seed;
    if ((rc = pnn_model_new(&c->model, o->model, &no, e))) {
        rc = pt_seterr(err, rc == PNN_ERR_NOMEM ? PT_ERR_NOMEM : PT_ERR_INVAL, "model '%s': %s",
                       o->model, e);
        goto done;
    }
    if ((rc = pt_agent_params_view(&c->w, c->model, err))) goto done;
    if ((rc = limits(c, err))) goto done;
    if ((rc = load_data(c, err))) goto done;
    c->contract.val_split = o->val_split;
    c->contract.seed = o->seed;
    c->contract.model_classes = pnn_num_classes(c->model);
    {
        char part[32];
        snprintf(part, sizeof part, "%d/%d", o->part, o->num_parts);
        pt_client_info ci = {c->id, part, (int64_t)c->train.n, (int64_t)c->val.n,
                             pnn_backend_name((pnn_backend)o->backend), o->model, o->dataset};
        pt_results_client_start(c->res, &ci);
    }
    CLOG(c, "client %s: %zu training and %zu validation examples (partition %d/%d, %s)", c->id,
         c->train.n, c->val.n, o->part, o->num_parts, o->partitioner);
    rc = join_and_serve(c, err);
done:
    if (rc) PT_RERROR(c->res, "%s", err && *err ? err : pt_strerror(rc));
    pt_results_client_end(c->res, pt_now() - t_start,
                          rc == PT_OK                   ? "ok"
                          : rc == PT_ERR_INTERRUPTED ? "interrupted"
                                                        : "error",
                          rc ? err : NULL);
    pnet_client_free(c->net);
    pt_agent_params_view_free(&c->w);
    pnn_model_free(c->model);
    pd_dataset_free(&c->train);
    pd_dataset_free(&c->val);
    free(c->out);
    pt_results_close(c->res);
    return rc;
}
