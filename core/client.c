/* client.c - the Petal client agent: Flower's start_client loop over the
 * grpc-bidi protocol. Connects with retry/backoff, then answers exactly one
 * ClientMessage per ServerMessage: GetParameters, GetProperties, Fit (train
 * the nn model on this client's partition), Evaluate (local validation
 * split), and on ReconnectIns sends DisconnectRes, half-closes and either
 * reconnects after `seconds` or returns. */
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
    pt_contract_state contract; /* the server's classes and split, once agreed */
    int contract_noted;         /* "no contract" said once */
} cli;

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

static int progress_cb(const pnn_progress *p, void *user)
{
    cli *c = user;
    (void)p;
    if (c->o->stop && *c->o->stop) return 1;
    double now = pt_now();
    if (now - c->last_poll > 2.0) { /* answer PINGs, move flow control */
        char e[PT_ERRLEN];
        pnet_client_poll(c->net, 0, e);
        c->last_poll = now;
    }
    return 0;
}

static int config_int(const pt_config *cfg, const char *key, int def, int lo, int hi, int *out,
                      char *err)
{
    double v;
    int rc = pt_config_get_number(cfg, key, &v);
    if (rc == PT_ERR_NOTFOUND) {
        *out = def;
        return PT_OK;
    }
    if (rc || v != floor(v) || v < lo || v > hi)
        return pt_seterr(err, PT_ERR_INVAL, "config '%s' must be an integer in [%d, %d]", key, lo,
                         hi);
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

static int do_fit(cli *c, const pnet_server_in *in, char *err)
{
    char e[PT_ERRLEN];
    int epochs, batch, rc;
    double lr, mu, t0 = pt_now();
    pt_cpu_sample mark;
    pt_config metrics = {0};
    pnet_client_out r = {0};
    pnn_epoch_stats *st = NULL;
    pt_cpu_mark(&mark);
    c->fits++;
    c->round = (int)pt_config_number_or(&in->config, "server_round", c->fits);
    r.type = PNET_CMSG_FIT;
    r.status_message = "Success";
    /* Training must depend only on (seed, round, partition) and the weights
     * received, never on this process's history (a restarted or resumed
     * federation then trains bit-identically): fresh optimizer and dropout
     * state from that seed (the weights are overwritten just below). */
    uint64_t fit_seed = mix64(mix64(c->o->seed ^ 0x66697473ull) + (uint64_t)c->round) +
                        (uint64_t)c->o->part;
    if (!c->o->keep_optimizer) pnn_model_init_weights(c->model, mix64(fit_seed));
    if ((rc = pnet_params_decode(&in->params, &c->w, PNET_NPY_ERR_OVERFLOW, e)))
        return pt_seterr(err, rc, "FitIns parameters do not fit this client's model: %s", e);
    /* Petal's keys, or the names Flower's examples use */
    const char *k_epochs = pt_config_get(&in->config, "epochs") ? "epochs" : "local_epochs";
    const char *k_lr = pt_config_get(&in->config, "lr") ? "lr" : "learning_rate";
    if ((rc = config_int(&in->config, k_epochs, 1, 0, 100000, &epochs, e)) ||
        (rc = config_int(&in->config, "batch_size", 32, 1, 1 << 20, &batch, e)) ||
        (rc = config_real(&in->config, k_lr, 1e-3, 0, 1e6, &lr, e)) ||
        (rc = config_real(&in->config, "proximal_mu", 0, 0, 1e12, &mu, e))) {
        /* answer with a non-OK status: the server counts a failure */
        CWARN(c, "fit refused: %s", e);
        r.status_code = PNET_CODE_FIT_NOT_IMPLEMENTED;
        r.status_message = e;
        return send_reply(c, &r, err);
    }
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
            return pt_seterr(err, PT_ERR_INTERRUPTED, "interrupted");
        }
        if (rc) {
            free(st);
            return pt_seterr(err, PT_ERR_NN, "training failed: %s", e);
        }
        loss = st[epochs - 1].loss;
        acc = st[epochs - 1].accuracy;
        free(st);
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

static int do_evaluate(cli *c, const pnet_server_in *in, char *err)
{
    char e[PT_ERRLEN];
    int batch, rc;
    double loss = 0, acc = 0, t0 = pt_now();
    pt_cpu_sample mark;
    pt_config metrics = {0};
    pnet_client_out r = {0};
    pt_cpu_mark(&mark);
    c->evals++;
    c->round = (int)pt_config_number_or(&in->config, "server_round", c->evals);
    r.type = PNET_CMSG_EVALUATE;
    r.status_message = "Success";
    if ((rc = pnet_params_decode(&in->params, &c->w, PNET_NPY_ERR_OVERFLOW, e)))
        return pt_seterr(err, rc, "EvaluateIns parameters do not fit this client's model: %s", e);
    if ((rc = config_int(&in->config, "batch_size", 32, 1, 1 << 20, &batch, e))) {
        CWARN(c, "evaluate refused: %s", e);
        r.status_code = PNET_CODE_EVALUATE_NOT_IMPLEMENTED;
        r.status_message = e;
        return send_reply(c, &r, err);
    }
    /* The batch size does not change the results: once training has sized the
     * model's buffers, evaluating in larger batches would only grow every
     * activation and gradient buffer (a seed-cnn client: ~0.5 GB at 128) */
    if (c->fit_batch && batch > c->fit_batch) batch = c->fit_batch;
    if (c->val.n) {
        rc = pnn_evaluate(c->model, c->val.x, c->val.y, c->val.n, batch, &loss, &acc, e);
        if (rc) return pt_seterr(err, PT_ERR_NN, "evaluation failed: %s", e);
    }
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
        if (c->o->stop && *c->o->stop) return pt_seterr(err, PT_ERR_INTERRUPTED, "interrupted");
        rc = pnet_client_recv(c->net, &buf, &len, 500, e);
        if (rc == PT_ERR_TIMEOUT) continue;
        if (rc == PT_ERR_CLOSED && pnet_client_status(c->net, NULL) == PNET_GRPC_UNAUTHENTICATED)
            return pt_seterr(err, PT_ERR_AUTH, "the server refused this client: %s (check "
                             "--auth-token-file / PETAL_AUTH_TOKEN)", e);
        if (rc == PT_ERR_CLOSED)
            return pt_seterr(err, rc, "the server ended the stream without ReconnectIns: %s", e);
        if (rc) return pt_seterr(err, rc, "connection lost: %s", e);
        if ((rc = pnet_server_in_decode(buf, len, &in, e)))
            return pt_seterr(err, rc, "undecodable ServerMessage: %s", e);
        CDEBUG(c, "Received: %s message", pnet_smsg_name(in.type));
        switch (in.type) {
        case PNET_SMSG_RECONNECT: {
            pnet_client_out r = {0};
            r.type = PNET_CMSG_DISCONNECT;
            r.reason = in.seconds > 0 ? PNET_REASON_RECONNECT : PNET_REASON_ACK;
            *reconnect_after = in.seconds > 0 ? (double)in.seconds : -1;
            rc = send_reply(c, &r, e);
            if (rc) CDEBUG(c, "DisconnectRes not sent: %s", e);
            pnet_client_close(c->net, 2000);
            pnet_server_in_free(&in);
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
    int rejoining = 0;
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
        co.connect_deadline_s = o->connect_timeout > 0 ? o->connect_timeout : -1;
        if (rejoining) co.connect_deadline_s = o->rejoin;
        if ((rc = pnet_client_connect(&c->net, &co, e))) {
            rc = pt_seterr(err, rc, "cannot join %s: %s", o->server, e);
            goto done;
        }
        if (co.tls)
            CLOG(c, "Opened secure gRPC connection using certificates");
        else
            CLOG(c, "Opened insecure gRPC connection (no certificates were passed)");
        rc = serve(c, &again, err);
        pnet_client_free(c->net);
        c->net = NULL;
        if (rc && o->rejoin > 0 && (rc == PT_ERR_CLOSED || rc == PT_ERR_NET) &&
            !(o->stop && *o->stop)) {
            CWARN(c, "%s; joining again (retrying for up to %g s)", err, o->rejoin);
            rejoining = 1;
            pt_sleep(0.2, o->stop);
            continue;
        }
        if (rc) goto done;
        rejoining = 0;
        if (again < 0) {
            CLOG(c, "Disconnect and shut down");
            break;
        }
        CLOG(c, "Disconnect, then re-establish connection after %g second(s)", again);
        pt_sleep(again, o->stop);
        if (o->stop && *o->stop) {
            rc = pt_seterr(err, PT_ERR_INTERRUPTED, "interrupted");
            goto done;
        }
    }
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
