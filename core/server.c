/* server.c - the Petal server agent: Flower's Server.fit round loop (1.5/1.6
 * semantics, see the protocol notes) over the grpc-bidi transport. One thread:
 * the transport's epoll loop dispatches on_join / on_message / on_leave, and
 * FitRes updates are folded into the strategy inside on_message, as they
 * arrive, straight from the received message bytes (zero copy for float32). */
#include "agent_int.h"
#include "checkpoint_int.h"
#include "contract_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pdata.h"
#include "pnet.h"
#include "pnn.h"
#include "pst.h"
#include "results_int.h"

enum { PH_IDLE = 0, PH_INIT, PH_FIT, PH_EVAL, PH_BYE };

typedef struct srv_client {
    uint64_t id;
    char peer[80];
    int busy;     /* waiting for this client's reply */
    int gone;     /* left (entry removed at the next compaction) */
    int served;   /* was sent an instruction at least once */
} srv_client;

typedef pt_ckpt_hist hist;

/* A validated FitRes waiting to be folded in a canonical order. */
typedef struct held {
    pnet_msg *msg;      /* one reference */
    int64_t n;          /* num_examples */
    uint32_t key;       /* CRC-32 of the tensor bytes */
    char peer[80];
} held;

typedef struct srv {
    const pt_server_opts *o;
    pnet_server *net;
    pt_results *res;
    pst_strategy *st;
    pnn_model *model;
    pd_dataset train, test;
    int have_test;
    pt_contract contract;  /* classes and held-out split the clients must follow */
    pt_params global;
    pt_params scratch;     /* conversion space for non-float32 / fortran updates */
    pt_tensor *upd_t;      /* views of one update */
    srv_client *cl;
    size_t ncl, capcl;
    int phase, round;
    int outstanding;       /* replies still awaited in this phase */
    int results, failures;
    int init_done;
    char init_err[PT_ERRLEN];
    uint64_t rng;
    double t_start;
    hist *h_cent, *h_dist;
    size_t n_cent, n_dist;
    pt_config fit_metrics_hist, eval_metrics_hist; /* "key" -> "[(r, v), ...]" strings */
    double central_loss;   /* centralised loss of the current global (QFedAvg) */
    double t_phase;        /* when the current phase's instructions went out */
    double fold_time;      /* seconds spent folding updates this round */
    struct held *held;     /* --ordered-aggregation: validated FitRes kept until the round ends */
    size_t nheld, capheld;
    const char *ckpt_dir;  /* where checkpoints go (NULL = none) */
    char ckpt_buf[4096];
    double elapsed0;       /* seconds taken before a resume */
    double slowest[2];     /* --round-timeout auto: slowest reply seen, fit [0] and
                              evaluate [1] phases of earlier rounds (0 = none yet) */
    double phase_slowest;  /* and in the current phase */
    pnet_decode_limits lim; /* caps on what clients send (maps; at most the model's
                               tensors) */
    int max_keys;          /* distinct keys per metric history (max_metric_keys) */
    int rounds_updated;    /* rounds whose fit produced new global parameters */
    int ckpt_failures;     /* checkpoints that could not be written */
} srv;

#define SLOG(s, ...) PT_RINFO((s)->res, __VA_ARGS__)
#define SWARN(s, ...) PT_RWARN((s)->res, __VA_ARGS__)
#define SDEBUG(s, ...) PT_RLOG((s)->res, PT_LOG_DEBUG, __VA_ARGS__)

void pt_server_opts_init(pt_server_opts *o)
{
    memset(o, 0, sizeof *o);
    o->address = "0.0.0.0:8080";
    o->rounds = 3;
    o->strategy = "FedAvg";
    o->model = "fmnist-cnn";
    o->val_split = 0.25;
    o->epochs = 1;
    o->batch_size = 32;
    o->lr = 1e-3;
    o->round_timeout = 0;
    o->wait_clients = 300;
    o->seed = 1337;
}

/* Python's repr of a float: the shortest text that reads back the same. */
static const char *pyf(char *buf, size_t len, double v)
{
    if (isnan(v)) return "nan";
    if (isinf(v)) return v > 0 ? "inf" : "-inf";
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".eni")) strncat(buf, ".0", len - strlen(buf) - 1);
    return buf;
}

/* ---- client registry --------------------------------------------------------- */

/* The registry is in join order, and the transport numbers clients as they
 * join (compact keeps the order): ids ascend, a binary search finds one (a
 * flood of Join streams costs O(log n) per callback, not O(n)). */
static srv_client *find_client(srv *s, uint64_t id)
{
    size_t lo = 0, hi = s->ncl;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->cl[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->ncl && s->cl[lo].id == id && !s->cl[lo].gone ? &s->cl[lo] : NULL;
}

static int n_available(const srv *s)
{
    int n = 0;
    for (size_t i = 0; i < s->ncl; i++) n += !s->cl[i].gone;
    return n;
}

static void compact(srv *s)
{
    size_t j = 0;
    for (size_t i = 0; i < s->ncl; i++)
        if (!s->cl[i].gone) s->cl[j++] = s->cl[i];
    s->ncl = j;
}

static void on_join(pnet_server *net, uint64_t id, const char *peer, void *user)
{
    srv *s = user;
    (void)net;
    if (s->ncl == s->capcl) {
        size_t nc = s->capcl ? s->capcl * 2 : 16;
        srv_client *c = realloc(s->cl, nc * sizeof *c);
        if (!c) {
            pnet_server_end_stream(s->net, id, PNET_GRPC_RESOURCE_EXHAUSTED, "out of memory");
            return;
        }
        s->cl = c;
        s->capcl = nc;
    }
    srv_client *c = &s->cl[s->ncl++];
    memset(c, 0, sizeof *c);
    c->id = id;
    /* one connection may carry several Join streams: add the stream's id */
    snprintf(c->peer, sizeof c->peer, "%s#%llu", peer ? peer : "?", (unsigned long long)id);
    SDEBUG(s, "client %s joined (%d connected)", c->peer, pnet_server_clients(s->net));
}

/* A busy client's reply will never come: count the failure of the phase. */
static void phase_failure(srv *s, srv_client *c, const char *why)
{
    if (!c->busy) return;
    c->busy = 0;
    s->outstanding--;
    s->failures++;
    if (s->phase == PH_FIT) pst_fit_failure(s->st);
    else if (s->phase == PH_EVAL) pst_evaluate_failure(s->st);
    else if (s->phase == PH_INIT)
        pt_seterr(s->init_err, 0, "client %s: %s", c->peer, why);
    if (s->phase != PH_BYE) {
        if (s->phase == PH_INIT)
            SWARN(s, "init: client %s failed: %s", c->peer, why);
        else
            SWARN(s, "%s %d: client %s failed: %s",
                  s->phase == PH_FIT ? "fit_round" : "evaluate_round", s->round, c->peer, why);
        pt_results_failure(s->res, s->phase == PH_INIT ? 0 : s->round, c->peer,
                           s->phase == PH_FIT    ? "fit"
                           : s->phase == PH_EVAL ? "evaluate"
                                                 : "get_parameters",
                           why);
    }
}

static void on_leave(pnet_server *net, uint64_t id, int reason, const char *detail, void *user)
{
    srv *s = user;
    srv_client *c = find_client(s, id);
    (void)net;
    if (!c) return;
    if (c->busy) {
        char why[PT_ERRLEN];
        pt_seterr(why, 0, "disconnected (%s%s%s)", pnet_leave_name(reason),
                 detail && *detail ? ": " : "", detail ? detail : "");
        phase_failure(s, c, why);
    } else if (s->phase != PH_BYE && c->served && reason != PNET_LEAVE_DONE &&
               reason != PNET_LEAVE_CANCELLED && reason != PNET_LEAVE_ENDED) {
        /* a client that never took part leaves quietly (debug): anyone can open and
           drop Join streams, their connections are logged by the transport */
        SWARN(s, "client %s left: %s%s%s", c->peer, pnet_leave_name(reason),
              detail && *detail ? ": " : "", detail ? detail : "");
    } else {
        SDEBUG(s, "client %s left (%s)", c->peer, pnet_leave_name(reason));
    }
    c->gone = 1;
}

/* The client broke the protocol: end its stream with an error status. */
static void reject(srv *s, srv_client *c, int grpc_status, const char *why)
{
    phase_failure(s, c, why);
    pnet_server_end_stream(s->net, c->id, grpc_status, why);
    c->gone = 1; /* never sampled again; its on_leave is ignored */
}

/* ---- replies --------------------------------------------------------------------- */

/* Build a view of the update's tensors (zero copy for little-endian C-order
 * float32; converted into scratch otherwise), checked against the global. */
static int update_view(srv *s, const pnet_params_view *v, pt_params *upd, char *err)
{
    char e2[PT_ERRLEN];
    if (v->n != s->global.n)
        return pt_seterr(err, PT_ERR_MISMATCH, "FitRes has %zu tensors, the model has %zu", v->n,
                         s->global.n);
    upd->n = v->n;
    upd->t = s->upd_t;
    upd->buf = NULL;
    upd->total = s->global.total;
    for (size_t i = 0; i < v->n; i++) {
        pnet_npy_info info;
        const pt_tensor *g = &s->global.t[i];
        int rc = pnet_npy_view(v->tensors[i].ptr, v->tensors[i].len, &info, e2);
        if (rc) return pt_seterr(err, rc, "tensor %zu: %s", i, e2);
        int same = info.ndim == g->ndim;
        for (int d = 0; same && d < g->ndim; d++) same = info.shape[d] == g->shape[d];
        if (!same) {
            char a[96] = "", b[96] = "";
            for (int d = 0; d < info.ndim; d++)
                snprintf(a + strlen(a), sizeof a - strlen(a), "%s%lld", d ? ", " : "",
                         (long long)info.shape[d]);
            for (int d = 0; d < g->ndim; d++)
                snprintf(b + strlen(b), sizeof b - strlen(b), "%s%lld", d ? ", " : "",
                         (long long)g->shape[d]);
            return pt_seterr(err, PT_ERR_MISMATCH, "tensor %zu: shape (%s%s), the model's (%s%s)",
                             i, a, info.ndim == 1 ? "," : "", b, g->ndim == 1 ? "," : "");
        }
        if (info.dtype != PNET_DT_F4 && info.dtype != PNET_DT_F8)
            return pt_seterr(err, PT_ERR_UNSUPPORTED,
                             "tensor %zu: dtype %s is not a floating-point weight type", i,
                             info.dtype == PNET_DT_I8 ? "int64" : "unknown");
        pt_tensor *t = &s->upd_t[i];
        *t = *g;
        if (info.dtype == PNET_DT_F4 && !info.big_endian &&
            (!info.fortran_order || info.ndim < 2)) {
            t->data = (float *)(uintptr_t)info.data; /* unaligned view; pst copes */
        } else {
            if (!s->scratch.buf && (rc = pt_params_init_like(&s->scratch, &s->global)))
                return pt_seterr(err, rc, "out of memory");
            rc = pnet_npy_to_f32(&info, s->scratch.t[i].data, g->numel, PNET_NPY_ERR_OVERFLOW,
                                 e2);
            if (rc) return pt_seterr(err, rc, "tensor %zu: %s", i, e2);
            t->data = s->scratch.t[i].data;
        }
    }
    return PT_OK;
}

static int64_t max_examples(const srv *s)
{
    return s->o->max_examples > 0 ? s->o->max_examples : PT_MAX_EXAMPLES_DEFAULT;
}

/* A FitRes that must not be aggregated: a failure of the round, logged with
 * the client and the reason; the client stays connected for later rounds. */
static void reject_update(srv *s, srv_client *c, const char *why)
{
    c->busy = 0;
    s->outstanding--;
    s->failures++;
    pst_fit_failure(s->st);
    SWARN(s, "fit_round %d: update of client %s rejected: %s", s->round, c->peer, why);
    pt_results_failure(s->res, s->round, c->peer, "fit", why);
}

static int held_cmp(const void *a, const void *b)
{
    const held *x = a, *y = b;
    if (x->n != y->n) return x->n < y->n ? -1 : 1;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    size_t lx = pnet_msg_len(x->msg), ly = pnet_msg_len(y->msg);
    if (lx != ly) return lx < ly ? -1 : 1;
    return memcmp(pnet_msg_data(x->msg), pnet_msg_data(y->msg), lx);
}

static void held_drop(srv *s)
{
    for (size_t i = 0; i < s->nheld; i++) pnet_msg_unref(s->held[i].msg);
    s->nheld = 0;
}

/* --ordered-aggregation: fold the round's updates sorted by (num_examples,
 * content), so the aggregate does not depend on the order they arrived in
 * nor on which connection sent which (bit-exact reruns and resumes with any
 * accumulator and any number of clients). Costs one held message per client. */
static void fold_held(srv *s)
{
    char e[PT_ERRLEN];
    if (!s->nheld) return;
    qsort(s->held, s->nheld, sizeof *s->held, held_cmp);
    for (size_t i = 0; i < s->nheld; i++) {
        held *h = &s->held[i];
        pnet_client_in in;
        pt_params upd;
        int rc = pnet_client_in_decode(pnet_msg_data(h->msg), pnet_msg_len(h->msg), &s->lim, &in,
                                       e);
        if (!rc) rc = update_view(s, &in.params, &upd, e);
        if (!rc) {
            double t_fold = pt_now();
            rc = pst_fit_add(s->st, &upd, in.num_examples, &in.metrics, e);
            s->fold_time += pt_now() - t_fold;
        } else {
            pst_fit_failure(s->st);
        }
        if (rc) {
            s->results--;
            s->failures++;
            SWARN(s, "fit_round %d: update of client %s rejected: %s", s->round, h->peer, e);
            pt_results_failure(s->res, s->round, h->peer, "fit", e);
        }
        pnet_client_in_free(&in);
    }
    held_drop(s);
}

/* A reply arrived: how long this client took (for the auto timeout). */
static void note_reply_time(srv *s)
{
    double took = pt_now() - s->t_phase;
    if (took > s->phase_slowest) s->phase_slowest = took;
}

static void handle_reply(srv *s, srv_client *c, pnet_msg *msg)
{
    pnet_client_in in;
    char e[PT_ERRLEN], why[PT_ERRLEN + 64];
    note_reply_time(s);
    /* no more tensors than the model has: an update of a million empty ones costs
       no memory (issue 11) */
    int rc = pnet_client_in_decode(pnet_msg_data(msg), pnet_msg_len(msg), &s->lim, &in, e);
    pnet_cmsg_type want = s->phase == PH_FIT    ? PNET_CMSG_FIT
                          : s->phase == PH_EVAL ? PNET_CMSG_EVALUATE
                          : s->phase == PH_INIT ? PNET_CMSG_GET_PARAMETERS
                                                : PNET_CMSG_DISCONNECT;
    if (rc == PT_ERR_MISMATCH && want == PNET_CMSG_FIT) { /* well-formed, wrong tensor count */
        pt_seterr(why, 0, "bad FitRes parameters: %s", e);
        reject_update(s, c, why);
        return;
    }
    if (rc) {
        pt_seterr(why, 0, "bad ClientMessage: %s%s", e,
                  rc == PT_ERR_RANGE ? " (see --max-metric-keys, --max-key-bytes)" : "");
        reject(s, c, PNET_GRPC_INVALID_ARGUMENT, why);
        return;
    }
    if (in.type != want) {
        pt_seterr(why, 0, "expected %s, got %s", pnet_cmsg_name(want),
                 pnet_cmsg_name(in.type));
        reject(s, c, PNET_GRPC_INVALID_ARGUMENT, why);
        goto out;
    }
    if (in.status_code != PNET_CODE_OK) {
        char esc[204]; /* the client's text, escaped for the logs */
        pt_seterr(why, 0, "status code %d: %s", in.status_code,
                  pt_escape(esc, sizeof esc, in.status_message.ptr, in.status_message.len));
        phase_failure(s, c, why);
        goto out;
    }
    if (s->phase == PH_INIT) {
        rc = pnet_params_decode(&in.params, &s->global, PNET_NPY_ERR_OVERFLOW, e);
        c->busy = 0;
        s->outstanding--;
        if (rc) {
            pt_seterr(s->init_err, 0,
                     "initial parameters from client %s do not fit the server's model: %s",
                     c->peer, e);
            s->failures++;
        } else {
            s->init_done = 1;
            s->results++;
        }
        goto out;
    }
    if (s->phase == PH_FIT) {
        pt_params upd;
        if (in.num_examples <= 0 || in.num_examples > max_examples(s)) {
            pt_seterr(why, 0, "FitRes num_examples %lld is %s", (long long)in.num_examples,
                      in.num_examples <= 0 ? "not positive" : "above the limit (--max-examples)");
            reject_update(s, c, why);
            goto out;
        }
        rc = update_view(s, &in.params, &upd, e);
        if (rc) {
            pt_seterr(why, 0, "bad FitRes parameters: %s", e);
            if (rc == PT_ERR_FORMAT || rc == PT_ERR_RANGE) /* undecodable: end the stream */
                reject(s, c, PNET_GRPC_INVALID_ARGUMENT, why);
            else /* well-formed but wrong (count, shape, dtype): not aggregated */
                reject_update(s, c, why);
            goto out;
        }
        c->busy = 0;
        s->outstanding--;
        if (s->o->ordered_fold) { /* fold at the end of the round, in a canonical order */
            if (s->nheld == s->capheld) {
                size_t nc = s->capheld ? 2 * s->capheld : 16;
                held *nh = realloc(s->held, nc * sizeof *nh);
                if (!nh) {
                    s->failures++;
                    pst_fit_failure(s->st);
                    SWARN(s, "fit_round %d: update of client %s dropped: out of memory",
                          s->round, c->peer);
                    goto out;
                }
                s->held = nh;
                s->capheld = nc;
            }
            held *h = &s->held[s->nheld++];
            h->msg = pnet_msg_ref(msg);
            h->n = in.num_examples;
            h->key = 0;
            for (size_t i = 0; i < in.params.n; i++)
                h->key = pt_crc32(h->key, in.params.tensors[i].ptr, in.params.tensors[i].len);
            snprintf(h->peer, sizeof h->peer, "%s", c->peer);
            s->results++;
            goto out;
        }
        double t_fold = pt_now();
        rc = pst_fit_add(s->st, &upd, in.num_examples, &in.metrics, e);
        s->fold_time += pt_now() - t_fold;
        if (rc) { /* the strategy counted it as a failure */
            s->failures++;
            SWARN(s, "fit_round %d: update of client %s rejected: %s", s->round, c->peer, e);
            pt_results_failure(s->res, s->round, c->peer, "fit", e);
        } else {
            s->results++;
        }
        goto out;
    }
    /* evaluate */
    c->busy = 0;
    s->outstanding--;
    if (in.num_examples < 0 || in.num_examples > max_examples(s)) {
        s->failures++;
        pst_evaluate_failure(s->st);
        pt_seterr(why, 0, "EvaluateRes num_examples %lld is %s", (long long)in.num_examples,
                  in.num_examples < 0 ? "negative" : "above the limit (--max-examples)");
        SWARN(s, "evaluate_round %d: result of client %s rejected: %s", s->round, c->peer, why);
        pt_results_failure(s->res, s->round, c->peer, "evaluate", why);
        goto out;
    }
    rc = pst_evaluate_add(s->st, (double)in.loss, in.num_examples, &in.metrics, e);
    if (rc) {
        s->failures++;
        SWARN(s, "evaluate_round %d: result of client %s rejected: %s", s->round, c->peer, e);
        pt_results_failure(s->res, s->round, c->peer, "evaluate", e);
    } else {
        s->results++;
    }
out:
    pnet_client_in_free(&in);
}

static void on_message(pnet_server *net, uint64_t id, pnet_msg *msg, void *user)
{
    srv *s = user;
    srv_client *c = find_client(s, id);
    (void)net;
    if (!c) return;
    if (!c->busy) {
        /* DisconnectRes after ReconnectIns, or an unsolicited message */
        if (s->phase != PH_BYE)
            SDEBUG(s, "ignoring an unsolicited message from client %s", c->peer);
        return;
    }
    handle_reply(s, c, msg);
}

/* ---- waiting ------------------------------------------------------------------------ */

static int stopped(const srv *s)
{
    return s->o->stop && *s->o->stop;
}

/* Poll until `min` clients are connected or wait_clients passes. */
static int wait_for_clients(srv *s, int min, char *err)
{
    double t0 = pt_now(), last_log = t0;
    while (n_available(s) < min) {
        if (stopped(s)) return pt_seterr(err, PT_ERR_INTERRUPTED, "interrupted");
        double now = pt_now();
        if (now - t0 > s->o->wait_clients)
            return pt_seterr(err, PT_ERR_TIMEOUT,
                             "only %d of the %d required clients connected within %g s "
                             "(see --wait-clients)",
                             n_available(s), min, s->o->wait_clients);
        if (now - last_log > 10) {
            SLOG(s, "waiting for clients: %d of %d connected", n_available(s), min);
            last_log = now;
        }
        int rc = pnet_server_poll(s->net, 100);
        if (rc < 0) return pt_seterr(err, rc, "server poll failed");
        compact(s);
    }
    return PT_OK;
}

/* --round-timeout auto: how long the clients of the current phase get, in
 * seconds from the instruction: PT_AUTO_TIMEOUT_FACTOR x the slowest reply
 * of this kind so far (earlier rounds or this phase; evaluate falls back on
 * fit), at least the floor; before any reply, PT_AUTO_TIMEOUT_FIRST (but
 * the floor for GetParameters, which trains nothing). Fixed (> 0): that;
 * none (< 0): forever. */
static double phase_limit(const srv *s, double *ref_out)
{
    double floor, ref;
    *ref_out = 0;
    if (s->o->round_timeout > 0) return s->o->round_timeout;
    if (s->o->round_timeout < 0) return INFINITY;
    floor = s->o->round_timeout_min > 0 ? s->o->round_timeout_min : PT_AUTO_TIMEOUT_MIN;
    if (s->phase == PH_INIT) return floor;
    ref = s->phase == PH_EVAL ? s->slowest[1] : s->slowest[0];
    if (s->phase == PH_EVAL && ref <= 0) ref = s->slowest[0];
    if (s->phase_slowest > ref) ref = s->phase_slowest;
    *ref_out = ref;
    if (ref <= 0) return floor > PT_AUTO_TIMEOUT_FIRST ? floor : PT_AUTO_TIMEOUT_FIRST;
    return PT_AUTO_TIMEOUT_FACTOR * ref > floor ? PT_AUTO_TIMEOUT_FACTOR * ref : floor;
}

/* Time out the busy clients past the phase's limit. */
static void expire(srv *s)
{
    double ref, limit = phase_limit(s, &ref);
    char why[PT_ERRLEN], how[160] = "";
    if (!isfinite(limit) || pt_now() - s->t_phase < limit) return;
    if (s->o->round_timeout == 0 && ref > 0)
        snprintf(how, sizeof how,
                 " (--round-timeout auto: %d x the slowest reply so far, %.3g s, at least %g s)",
                 PT_AUTO_TIMEOUT_FACTOR, ref,
                 s->o->round_timeout_min > 0 ? s->o->round_timeout_min : PT_AUTO_TIMEOUT_MIN);
    else if (s->o->round_timeout == 0)
        snprintf(how, sizeof how, " (--round-timeout auto: no client had replied yet)");
    pt_seterr(why, 0, "Timeout of %gsec was exceeded.%s", limit, how);
    for (size_t i = 0; i < s->ncl; i++) {
        srv_client *c = &s->cl[i];
        if (c->gone || !c->busy) continue;
        reject(s, c, PNET_GRPC_DEADLINE_EXCEEDED, why);
    }
}

/* Poll until every awaited reply arrived or failed; enforce the deadline. */
static int wait_replies(srv *s, char *err)
{
    while (s->outstanding > 0) {
        if (stopped(s)) return pt_seterr(err, PT_ERR_INTERRUPTED, "interrupted");
        int rc = pnet_server_poll(s->net, 50);
        if (rc < 0) return pt_seterr(err, rc, "server poll failed");
        expire(s);
    }
    compact(s);
    return PT_OK;
}

/* Send msg to k sampled clients (indices into the registry). */
static void send_to(srv *s, const int *idx, int k, pnet_msg *msg)
{
    for (int j = 0; j < k; j++) {
        srv_client *c = &s->cl[idx[j]];
        c->busy = 1;
        c->served = 1;
        s->outstanding++;
        int rc = pnet_server_send(s->net, c->id, msg);
        if (rc) {
            char why[PT_ERRLEN];
            pt_seterr(why, 0, "send failed: %s", pt_strerror(rc));
            phase_failure(s, c, why);
            if (rc == PT_ERR_NOTFOUND || rc == PT_ERR_STATE) c->gone = 1;
        }
    }
}

static int build_msg(const pnet_server_out *m, pnet_msg **out, char *err)
{
    return pnet_server_out_msg(m, out, err);
}

/* ---- evaluation and history ------------------------------------------------------------ */

static int central_eval(srv *s, double *loss, double *acc, char *err)
{
    char e[PNN_ERRLEN];
    int rc;
    *loss = *acc = NAN;
    if (!s->have_test) return PT_OK;
    rc = pnn_set_weights_flat(s->model, s->global.buf, s->global.total, e);
    if (rc) return pt_seterr(err, PT_ERR_NN, "centralised evaluation: %s", e);
    /* batch by batch, so that a stop request (SIGINT/SIGTERM) is
     * honoured within a batch rather than after the whole test set */
    const size_t chunk = 128, insz = (size_t)s->test.h * s->test.w * s->test.c;
    double lsum = 0.0, correct = 0.0;
    for (size_t i = 0; i < s->test.n; i += chunk) {
        if (stopped(s)) return pt_seterr(err, PT_ERR_INTERRUPTED, "interrupted");
        size_t k = s->test.n - i < chunk ? s->test.n - i : chunk;
        double l, a;
        rc = pnn_evaluate(s->model, s->test.x + i * insz, s->test.y + i, k, 128, &l, &a, e);
        if (rc) return pt_seterr(err, PT_ERR_NN, "centralised evaluation: %s", e);
        lsum += l * (double)k;
        correct += round(a * (double)k);
    }
    if (s->test.n) {
        *loss = lsum / (double)s->test.n;
        *acc = correct / (double)s->test.n;
    }
    return PT_OK;
}

static void hist_add(hist **h, size_t *n, int round, double loss, double acc)
{
    hist *nh = realloc(*h, (*n + 1) * sizeof **h);
    if (!nh) return;
    *h = nh;
    nh[*n].round = round;
    nh[*n].loss = loss;
    nh[*n].acc = acc;
    (*n)++;
}

/* Append "(r, v)" for each numeric metric to the per-key history strings;
 * at most max_keys keys are tracked (a warning counts the others). */
static void metrics_hist_add(srv *s, pt_config *hist_cfg, int round, const pt_config *m)
{
    size_t over = 0;
    for (size_t i = 0; m && i < m->n; i++) {
        double v;
        if (pt_config_get_number(m, m->e[i].key, &v)) continue;
        const pt_scalar *prev = pt_config_get(hist_cfg, m->e[i].key);
        if (!prev && hist_cfg->n >= (size_t)s->max_keys) {
            over++;
            continue;
        }
        size_t plen = prev ? prev->v.s.len : 0;
        char *buf = malloc(plen + 64);
        if (!buf) return;
        char num[40];
        snprintf(buf, plen + 64, "%s%s(%d, %s)", prev ? prev->v.s.ptr : "", prev ? ", " : "",
                 round, pyf(num, sizeof num, v));
        pt_config_set_string(hist_cfg, m->e[i].key, buf);
        free(buf);
    }
    if (over)
        SWARN(s, "round %d: %zu metrics not recorded in the history, which already holds %d "
                 "keys (max_metric_keys)", round, over, s->max_keys);
}

static void log_metrics_hist(srv *s, const char *name, const pt_config *h)
{
    size_t cap = 64;
    /* keys are the clients' own: escaped (at most 8 bytes for each of theirs) */
    for (size_t i = 0; i < h->n; i++) cap += 8 * strlen(h->e[i].key) + h->e[i].val.v.s.len + 16;
    char *buf = malloc(cap);
    if (!buf) return;
    size_t off = (size_t)snprintf(buf, cap, "{");
    for (size_t i = 0; i < h->n; i++) {
        off += (size_t)snprintf(buf + off, cap - off, "%s'", i ? ", " : "");
        pt_escape(buf + off, cap - off, h->e[i].key, PT_ESC_CSTR);
        off += strlen(buf + off);
        off += (size_t)snprintf(buf + off, cap - off, "': [%s]", h->e[i].val.v.s.ptr);
    }
    snprintf(buf + off, cap - off, "}");
    SLOG(s, "app_fit: %s %s", name, buf);
    free(buf);
}

static void log_loss_hist(srv *s, const char *name, const hist *h, size_t n)
{
    size_t cap = 32 + n * 48;
    char *buf = malloc(cap);
    if (!buf) return;
    size_t off = (size_t)snprintf(buf, cap, "[");
    for (size_t i = 0; i < n; i++) {
        char num[40];
        off += (size_t)snprintf(buf + off, cap - off, "%s(%d, %s)", i ? ", " : "", h[i].round,
                                pyf(num, sizeof num, h[i].loss));
    }
    snprintf(buf + off, cap - off, "]");
    SLOG(s, "app_fit: %s %s", name, buf);
    free(buf);
}

/* ---- phases ----------------------------------------------------------------------------- */

/* Send msg (the reference is consumed) to the k sampled clients idx in `phase`
 * and wait for their replies or failures; the server is idle again on return. */
static int run_phase(srv *s, int phase, const int *idx, int k, pnet_msg *msg, char *err)
{
    s->phase = phase;
    s->results = s->failures = 0;
    s->t_phase = pt_now();
    s->phase_slowest = 0;
    send_to(s, idx, k, msg);
    pnet_msg_unref(msg);
    int rc = wait_replies(s, err);
    if (phase == PH_FIT || phase == PH_EVAL) { /* for the next rounds' auto timeout */
        double *sl = &s->slowest[phase == PH_EVAL];
        if (s->phase_slowest > *sl) *sl = s->phase_slowest;
    }
    s->phase = PH_IDLE;
    return rc;
}

static int init_from_client(srv *s, char *err)
{
    int rc, idx;
    pnet_msg *msg = NULL;
    SLOG(s, "Requesting initial parameters from one random client");
    if ((rc = wait_for_clients(s, 1, err))) return rc;
    compact(s);
    if ((rc = pst_sample(&s->rng, n_available(s), 1, &idx)))
        return pt_seterr(err, rc, "sampling failed");
    pnet_server_out m = {PNET_SMSG_GET_PARAMETERS, 0, NULL, NULL};
    if ((rc = build_msg(&m, &msg, err))) return rc;
    s->init_done = 0;
    s->init_err[0] = 0;
    if ((rc = run_phase(s, PH_INIT, &idx, 1, msg, err))) return rc;
    if (!s->init_done)
        return pt_seterr(err, PT_ERR_PROTO, "no initial parameters: %s",
                         s->init_err[0] ? s->init_err : "client failed");
    SLOG(s, "Received initial parameters from one random client");
    return PT_OK;
}

static int fit_round(srv *s, const pt_config *base_cfg, int *sampled, int *updated,
                     pt_config *fit_metrics, char *err)
{
    int k, min, rc, avail;
    pt_config cfg = {0};
    pnet_msg *msg = NULL;
    int *idx = NULL;
    *sampled = 0;
    *updated = 0;
    pst_num_fit_clients(s->st, n_available(s), &k, &min);
    if ((rc = wait_for_clients(s, min, err))) return rc;
    compact(s);
    avail = n_available(s);
    pst_num_fit_clients(s->st, avail, &k, &min);
    if (k > avail) {
        SLOG(s, "Sampling failed: number of available clients (%d) is less than number of "
                "requested clients (%d).", avail, k);
        SLOG(s, "fit_round %d: no clients selected, cancel", s->round);
        return PT_OK;
    }
    if (!(idx = malloc((size_t)(k ? k : 1) * sizeof *idx))) return PT_ERR_NOMEM;
    if ((rc = pst_sample(&s->rng, avail, k, idx))) goto done;
    if ((rc = pt_config_copy(&cfg, base_cfg))) goto done;
    pt_config_set_int(&cfg, "server_round", s->round); /* as Flower's examples do */
    if ((rc = pst_configure_fit(s->st, s->round, &cfg, err))) goto done;
    pnet_server_out m = {PNET_SMSG_FIT, 0, &s->global, &cfg};
    if ((rc = build_msg(&m, &msg, err))) goto done;
    SLOG(s, "fit_round %d: strategy sampled %d clients (out of %d)", s->round, k, avail);
    if ((rc = pst_fit_begin(s->st, s->round, &s->global, err))) goto done;
    if (pst_needs_central_loss(s->st) &&
        (rc = pst_set_central_loss(s->st, s->central_loss))) {
        int u;
        pst_fit_end(s->st, &s->global, &u, NULL, NULL);
        pt_seterr(err, rc, "central loss %g refused by the strategy", s->central_loss);
        goto done;
    }
    *sampled = k;
    rc = run_phase(s, PH_FIT, idx, k, msg, err);
    msg = NULL;
    if (rc) {
        int u;
        held_drop(s);
        pst_fit_end(s->st, &s->global, &u, NULL, NULL); /* close the round */
        goto done;
    }
    fold_held(s);
    SLOG(s, "fit_round %d received %d results and %d failures", s->round, s->results,
           s->failures);
    rc = pst_fit_end(s->st, &s->global, updated, fit_metrics, err);
    if (rc == PT_ERR_INVAL || rc == PT_ERR_DIVERGED) {
        /* Flower would raise here; a federation outlives one bad round */
        SWARN(s, "fit_round %d: aggregation failed, keeping the previous global model: %s",
              s->round, err);
        pt_results_failure(s->res, s->round, NULL, "aggregate_fit", err);
        *updated = 0;
        rc = PT_OK;
    }
done:
    pnet_msg_unref(msg);
    free(idx);
    pt_config_free(&cfg);
    return rc;
}

static int evaluate_round(srv *s, int *ran, double *loss, int *has_loss, pt_config *eval_metrics,
                          int *res_n, int *fail_n, char *err)
{
    int k, min, rc, avail;
    pt_config cfg = {0};
    pnet_msg *msg = NULL;
    int *idx = NULL;
    *ran = 0;
    *has_loss = 0;
    pst_num_evaluate_clients(s->st, n_available(s), &k, &min);
    if (k == 0) {
        SLOG(s, "evaluate_round %d: no clients selected, cancel", s->round);
        return PT_OK;
    }
    if ((rc = wait_for_clients(s, min, err))) return rc;
    compact(s);
    avail = n_available(s);
    pst_num_evaluate_clients(s->st, avail, &k, &min);
    if (k > avail || k == 0) {
        SLOG(s, "evaluate_round %d: no clients selected, cancel", s->round);
        return PT_OK;
    }
    if (!(idx = malloc((size_t)k * sizeof *idx))) return PT_ERR_NOMEM;
    if ((rc = pst_sample(&s->rng, avail, k, idx))) goto done;
    pt_config_set_int(&cfg, "server_round", s->round);
    pt_config_set_int(&cfg, "batch_size", s->o->batch_size);
    if ((rc = pt_contract_put(&s->contract, &cfg, 0))) goto done; /* classes, split */
    if ((rc = pst_configure_evaluate(s->st, s->round, &cfg, err))) goto done;
    pnet_server_out m = {PNET_SMSG_EVALUATE, 0, &s->global, &cfg};
    if ((rc = build_msg(&m, &msg, err))) goto done;
    SLOG(s, "evaluate_round %d: strategy sampled %d clients (out of %d)", s->round, k, avail);
    if ((rc = pst_evaluate_begin(s->st, s->round))) goto done;
    rc = run_phase(s, PH_EVAL, idx, k, msg, err);
    msg = NULL;
    *res_n = s->results;
    *fail_n = s->failures;
    if (rc) {
        pst_evaluate_end(s->st, loss, has_loss, NULL, NULL);
        *has_loss = 0;
        goto done;
    }
    *ran = 1;
    SLOG(s, "evaluate_round %d received %d results and %d failures", s->round, s->results,
           s->failures);
    rc = pst_evaluate_end(s->st, loss, has_loss, eval_metrics, err);
    if (rc == PT_ERR_INVAL || rc == PT_ERR_DIVERGED) {
        SWARN(s, "evaluate_round %d: aggregation failed: %s", s->round, err);
        *has_loss = 0;
        rc = PT_OK;
    }
done:
    pnet_msg_unref(msg);
    free(idx);
    pt_config_free(&cfg);
    return rc;
}

/* ReconnectIns (seconds unset) to everyone, then wait briefly for goodbyes. */
static void disconnect_all(srv *s)
{
    pnet_msg *msg = NULL;
    char e[PT_ERRLEN];
    pnet_server_out m = {PNET_SMSG_RECONNECT, 0, NULL, NULL};
    compact(s);
    if (!s->net || build_msg(&m, &msg, e)) return;
    s->phase = PH_BYE;
    for (size_t i = 0; i < s->ncl; i++) pnet_server_send(s->net, s->cl[i].id, msg);
    pnet_msg_unref(msg);
    double t0 = pt_now(), grace = s->o->round_timeout > 0 ? s->o->round_timeout : 5;
    if (grace > 5) grace = 5;
    while (n_available(s) > 0 && pt_now() - t0 < grace) {
        if (pnet_server_poll(s->net, 50) < 0) break;
    }
    for (size_t i = 0; i < s->ncl; i++)
        if (!s->cl[i].gone) pnet_server_end_stream(s->net, s->cl[i].id, PNET_GRPC_CANCELLED, NULL);
    pnet_server_flush(s->net, 1000);
}

/* The federation's classes and held-out split go to the clients in every
 * FitIns config (and, without the held-out filter, every EvaluateIns). */
static int send_contract(srv *s, pt_config *fit_cfg, char *err)
{
    char d[700];
    if (!s->contract.classes) {
        SLOG(s, "no --dataset: no data contract for the clients (their labels and split are "
                "their own)");
        return PT_OK;
    }
    if (pt_contract_put(&s->contract, fit_cfg, 1)) return pt_seterr(err, PT_ERR_NOMEM,
                                                                     "out of memory");
    pt_contract_describe(&s->contract, d, sizeof d);
    SLOG(s, "data contract for the clients (fit and evaluate config): %s", d);
    return PT_OK;
}

/* ---- setup --------------------------------------------------------------------------------- */

static int setup(srv *s, char *err)
{
    const pt_server_opts *o = s->o;
    char e[PT_ERRLEN];
    pnn_opts no;
    int rc;
    if (o->rounds < 1) return pt_seterr(err, PT_ERR_INVAL, "--rounds must be >= 1");
    pnn_opts_init(&no);
    no.backend = (pnn_backend)o->backend;
    no.threads = o->threads > 0 ? o->threads : 1;
    no.seed = o->seed;
    if ((rc = pnn_model_new(&s->model, o->model, &no, e)))
        return pt_seterr(err, rc == PNN_ERR_NOMEM ? PT_ERR_NOMEM : PT_ERR_INVAL, "model '%s': %s",
                         o->model, e);
    if ((rc = pt_agent_params_for_model(&s->global, s->model, err))) return rc;
    memcpy(s->global.buf, pnn_weights_data(s->model), s->global.total * sizeof(float));
    if (!(s->upd_t = calloc(s->global.n ? s->global.n : 1, sizeof *s->upd_t)))
        return PT_ERR_NOMEM;
    s->lim.max_tensors = s->global.n;
    if ((rc = pst_create(&s->st, o->strategy, o->strategy_opts, e)))
        return pt_seterr(err, rc, "strategy: %s", e);
    if (o->max_key_bytes > PT_CONFIG_KEY_MAX)
        return pt_seterr(err, PT_ERR_INVAL, "--max-key-bytes %zu is over %d", o->max_key_bytes,
                         PT_CONFIG_KEY_MAX);
    s->max_keys = pst_effective_options(s->st)->max_metric_keys;
    s->lim.max_map_entries = (size_t)s->max_keys;
    s->lim.max_key_len = o->max_key_bytes;
    if (o->dataset && *o->dataset) {
        pd_open_opts po = pd_open_opts_default();
        int h, w, c;
        pnn_input_shape(s->model, &h, &w, &c);
        po.h = h;
        po.w = w;
        po.c = c;
        po.val_split = o->val_split;
        po.seed = o->seed;
        po.test_limit = o->eval_limit;
        po.max_pixels = o->max_image_pixels;
        po.max_scans = o->max_jpeg_scans;
        po.quiet = 1;
        pd_split_info si;
        po.split_info = &si;
        if ((rc = pd_open(NULL, &s->test, o->dataset, &po, e))) /* the held-out split only */
            return pt_seterr(err, rc, "dataset: %s", e);
        rc = pt_contract_build(&s->contract, &s->test, &si, e);
        pd_split_info_free(&si);
        if (rc) return pt_seterr(err, rc, "%s", e);
        if (s->test.n == 0)
            return pt_seterr(err, PT_ERR_INVAL, "dataset '%s' has no held-out examples",
                             o->dataset);
        if (s->test.nclasses > pnn_num_classes(s->model))
            return pt_seterr(err, PT_ERR_MISMATCH, "dataset has %d classes, model outputs %d",
                             s->test.nclasses, pnn_num_classes(s->model));
        s->have_test = 1;
    }
    s->rng = o->seed ^ 0x9e3779b97f4a7c15ull;
    pnet_server_opts so = {0};
    so.address = o->address;
    so.tls_cert = o->tls_cert;
    so.tls_key = o->tls_key;
    so.max_message = o->max_message;
    so.max_connections = o->max_connections;
    so.max_header_list = o->max_header_list;
    so.max_conn_buffer = o->max_conn_buffer;
    so.max_rx_total = o->max_rx_total;
    so.handshake_timeout_s = o->handshake_timeout;
    so.max_conn_per_addr = o->max_conn_per_addr;
    so.max_streams_per_conn = o->max_streams_per_conn;
    so.max_refused_streams = o->max_refused_streams;
    so.tls_client_ca = o->tls_client_ca;
    so.auth_token = o->auth_token;
    so.user = s;
    so.on_join = on_join;
    so.on_message = on_message;
    so.on_leave = on_leave;
    if ((rc = pnet_server_new(&s->net, &so, e))) return pt_seterr(err, rc, "%s", e);
    if (o->port_file) {
        FILE *f = pt_fopen_write(o->port_file, e);
        if (!f) return pt_seterr(err, PT_ERR_IO, "--port-file: cannot write %s", e);
        fprintf(f, "%d\n", pnet_server_port(s->net));
        fclose(f);
    }
    return PT_OK;
}

static void teardown(srv *s)
{
    pnet_server_free(s->net);
    pst_free(s->st);
    pnn_model_free(s->model);
    pd_dataset_free(&s->test);
    pd_dataset_free(&s->train);
    pt_contract_free(&s->contract);
    pt_params_free(&s->global);
    pt_params_free(&s->scratch);
    held_drop(s);
    free(s->held);
    free(s->upd_t);
    free(s->cl);
    free(s->h_cent);
    free(s->h_dist);
    pt_config_free(&s->fit_metrics_hist);
    pt_config_free(&s->eval_metrics_hist);
    pt_results_close(s->res);
}

/* ---- checkpoints and final weights ------------------------------------------------ */

/* Where checkpoints go: --checkpoint-dir, else the directory resumed from,
 * else OUT/checkpoint; NULL = none. */
static const char *checkpoint_dir(srv *s)
{
    const pt_server_opts *o = s->o;
    if (o->no_checkpoint) return NULL;
    if (o->checkpoint_dir && *o->checkpoint_dir) return o->checkpoint_dir;
    if (o->resume && *o->resume) {
        struct stat sb;
        if (!stat(o->resume, &sb) && S_ISREG(sb.st_mode)) { /* a file: its directory */
            snprintf(s->ckpt_buf, sizeof s->ckpt_buf, "%s", o->resume);
            char *slash = strrchr(s->ckpt_buf, '/');
            if (slash) *slash = 0;
            else snprintf(s->ckpt_buf, sizeof s->ckpt_buf, ".");
            return s->ckpt_buf;
        }
        return o->resume;
    }
    if (o->out_dir && *o->out_dir) {
        snprintf(s->ckpt_buf, sizeof s->ckpt_buf, "%s/checkpoint", o->out_dir);
        return s->ckpt_buf;
    }
    return NULL;
}

static void write_checkpoint(srv *s, double last_central_loss)
{
    pt_ckpt c;
    char e[PT_ERRLEN];
    if (!s->ckpt_dir) return;
    memset(&c, 0, sizeof c);
    c.round = s->round;
    c.rounds = s->o->rounds;
    c.seed = s->o->seed;
    c.rng = s->rng;
    c.central_loss = last_central_loss;
    c.elapsed = s->elapsed0 + pt_now() - s->t_start;
    snprintf(c.model, sizeof c.model, "%s", s->o->model ? s->o->model : "");
    snprintf(c.strategy, sizeof c.strategy, "%s", pst_name(s->st));
    c.global = s->global;
    c.h_cent = s->h_cent;
    c.n_cent = s->n_cent;
    c.h_dist = s->h_dist;
    c.n_dist = s->n_dist;
    c.fit_hist = s->fit_metrics_hist;
    c.eval_hist = s->eval_metrics_hist;
    double t0 = pt_now();
    int rc = pt_ckpt_save(s->ckpt_dir, &c, s->st, e);
    if (rc) {
        s->ckpt_failures++;
        PT_RERROR(s->res, "round %d: no checkpoint written (a resume would start from the "
                          "previous one): %s", s->round, e);
        pt_results_failure(s->res, s->round, NULL, "checkpoint", e);
    } else {
        SDEBUG(s, "round %d: checkpoint written to %s/%s in %.1f ms", s->round, s->ckpt_dir,
               PT_CKPT_FILE, (pt_now() - t0) * 1e3);
    }
}

/* Continue from a checkpoint: global, strategy state, RNG, histories.
 * *next_round gets the first round to run. */
static int resume_from(srv *s, int *next_round, double *last_central_loss, char *err)
{
    pt_ckpt c;
    char e[PT_ERRLEN];
    int rc = pt_ckpt_load(s->o->resume, &s->global, &c, e);
    if (rc) return pt_seterr(err, rc, "--resume: %s", e);
    if (c.round >= s->o->rounds) {
        rc = pt_seterr(err, PT_ERR_INVAL,
                       "--resume: the checkpoint in %s is of round %d and --rounds is %d: nothing "
                       "is left to run (--rounds is the total; give more than %d to continue)",
                       s->o->resume, c.round, s->o->rounds, c.round);
        goto out;
    }
    if (strcmp(c.strategy, pst_name(s->st))) {
        rc = pt_seterr(err, PT_ERR_MISMATCH,
                       "--resume: the checkpoint was written by strategy %s, this server runs %s",
                       c.strategy, pst_name(s->st));
        goto out;
    }
    if (c.seed != s->o->seed)
        SWARN(s, "--resume: the checkpoint's seed is %llu, --seed is %llu: keeping the "
                 "checkpoint's sampling state", (unsigned long long)c.seed,
              (unsigned long long)s->o->seed);
    memcpy(s->global.buf, c.global.buf, s->global.total * sizeof(float));
    if ((rc = pst_initialize(s->st, &s->global, e))) {
        rc = pt_seterr(err, rc, "--resume: checkpoint parameters: %s", e);
        goto out;
    }
    if ((rc = pt_ckpt_restore_strategy(&c, s->st, e))) {
        rc = pt_seterr(err, rc, "--resume: %s", e);
        goto out;
    }
    s->rng = c.rng;
    s->central_loss = c.central_loss;
    *last_central_loss = c.central_loss;
    s->elapsed0 = c.elapsed;
    /* histories: move the arrays over */
    free(s->h_cent);
    free(s->h_dist);
    s->h_cent = c.h_cent;
    s->n_cent = c.n_cent;
    s->h_dist = c.h_dist;
    s->n_dist = c.n_dist;
    c.h_cent = c.h_dist = NULL;
    pt_config_free(&s->fit_metrics_hist);
    pt_config_free(&s->eval_metrics_hist);
    s->fit_metrics_hist = c.fit_hist;
    s->eval_metrics_hist = c.eval_hist;
    memset(&c.fit_hist, 0, sizeof c.fit_hist);
    memset(&c.eval_hist, 0, sizeof c.eval_hist);
    *next_round = c.round + 1;
    SLOG(s, "Resuming from the checkpoint of round %d in %s (%d rounds in total)", c.round,
         s->o->resume, s->o->rounds);
    rc = PT_OK;
out:
    pt_ckpt_free(&c);
    return rc;
}

static int save_weights(srv *s, char *why)
{
    char e[PNN_ERRLEN];
    if (!s->o->save_weights || !s->model) return PT_OK;
    int rc = pnn_set_weights_flat(s->model, s->global.buf, s->global.total, e);
    if (!rc) rc = pnn_save_weights(s->model, s->o->save_weights, e);
    if (rc) {
        pt_seterr(why, PT_ERR_IO, "--save-weights %s: %s", s->o->save_weights, e);
        PT_RERROR(s->res, "%s", why);
        return PT_ERR_IO;
    }
    SLOG(s, "global model weights saved to %s", s->o->save_weights);
    return PT_OK;
}

/* Success means the work was done: a run whose rounds never produced a new
 * global model, or whose requested outputs were not written, ends with an
 * error saying so. */
static int run_verdict(srv *s, int rounds_run, int weights_rc, const char *weights_why,
                       char *err)
{
    if (weights_rc) return pt_seterr(err, weights_rc, "%s", weights_why);
    if (s->ckpt_failures)
        return pt_seterr(err, PT_ERR_IO, "%d of the %d checkpoints could not be written (see "
                         "the log): a resume would start from an older round",
                         s->ckpt_failures, rounds_run);
    if (rounds_run > 0 && s->rounds_updated == 0)
        return pt_seterr(err, PT_ERR_STATE,
                         "none of the %d rounds produced new parameters (every fit failed or "
                         "was rejected): the global model is the initial one",
                         rounds_run);
    return PT_OK;
}

int pt_server_run(const pt_server_opts *o, char *err)
{
    srv S, *s = &S;
    char e[PT_ERRLEN], desc[512];
    int rc, rounds_done = 0;
    pt_config base = {0};
    memset(s, 0, sizeof *s);
    s->o = o;
    if (o->out_dir && (rc = pt_results_open(&s->res, o->out_dir, "server", err))) return rc;
    {
        char n1[40];
        SLOG(s, "Starting Flower server, config: ServerConfig(num_rounds=%d, round_timeout=%s)",
             o->rounds, o->round_timeout > 0 ? pyf(n1, sizeof n1, o->round_timeout)
                        : o->round_timeout < 0 ? "None" : "auto");
        if (o->round_timeout == 0)
            SLOG(s, "round timeout auto: a client gets %d x the slowest reply so far, at "
                    "least %g s (%g s before any reply); --round-timeout S or none to change",
                 PT_AUTO_TIMEOUT_FACTOR,
                 o->round_timeout_min > 0 ? o->round_timeout_min : PT_AUTO_TIMEOUT_MIN,
                 PT_AUTO_TIMEOUT_FIRST);
    }
    if ((rc = setup(s, err))) {
        PT_RERROR(s->res, "%s", err);
        pt_results_run_end(s->res, 0, 0, "error", err);
        teardown(s);
        return rc;
    }
    pst_describe(s->st, desc, sizeof desc);
    SLOG(s, "Flower ECE: gRPC server running (%d rounds), SSL is %s", o->rounds,
         o->tls_cert ? "enabled" : "disabled");
    SLOG(s, "strategy %s, listening on port %d", desc, pnet_server_port(s->net));
    pt_config_set_int(&base, "epochs", o->epochs);
    pt_config_set_int(&base, "batch_size", o->batch_size);
    pt_config_set_double(&base, "lr", o->lr);
    {
        const pst_options *eo = pst_effective_options(s->st);
        pt_config runcfg = {0};
        pt_config_copy(&runcfg, &base);
        pt_config_set_double(&runcfg, "fraction_fit", eo->fraction_fit);
        pt_config_set_double(&runcfg, "fraction_evaluate", eo->fraction_evaluate);
        pt_config_set_int(&runcfg, "min_fit_clients", eo->min_fit_clients);
        pt_config_set_int(&runcfg, "min_available_clients", eo->min_available_clients);
        pt_config_set_string(&runcfg, "strategy_description", desc);
        pt_config_set_int(&runcfg, "seed", (int64_t)o->seed);
        pt_run_info ri = {pst_name(s->st),
                          o->expected_clients > 0 ? o->expected_clients
                                                  : eo->min_available_clients,
                          pnn_backend_name((pnn_backend)o->backend), o->model,
                          o->dataset, o->rounds, o->address, &runcfg};
        pt_results_run_start(s->res, &ri);
        pt_config_free(&runcfg);
    }
    s->t_start = pt_now();
    s->ckpt_dir = checkpoint_dir(s);
    if ((rc = send_contract(s, &base, err))) goto fail;
    double last_central_loss = NAN;
    int first_round = 1;
    if (o->resume) {
        if ((rc = resume_from(s, &first_round, &last_central_loss, err))) goto fail;
        goto fl_start;
    }

    /* initial parameters */
    SLOG(s, "Initializing global parameters");
    if (o->init_from_client) {
        if ((rc = init_from_client(s, err))) goto fail;
    } else {
        SLOG(s, "Using initial parameters provided by strategy");
    }
    if ((rc = pst_initialize(s->st, &s->global, e))) {
        rc = pt_seterr(err, rc, "initial parameters: %s", e);
        goto fail;
    }
    if (s->have_test) {
        double loss, acc, t0 = pt_now();
        SLOG(s, "Evaluating initial parameters");
        if ((rc = central_eval(s, &loss, &acc, err))) goto fail;
        char n1[40], n2[40];
        SLOG(s, "initial parameters (loss, other metrics): %s, {'accuracy': %s}",
             pyf(n1, sizeof n1, loss), pyf(n2, sizeof n2, acc));
        pt_results_round0(s->res, loss, acc, pt_now() - t0);
        hist_add(&s->h_cent, &s->n_cent, 0, loss, acc);
        last_central_loss = loss;
        s->central_loss = loss;
    }
fl_start:
    SLOG(s, "FL starting");
    rounds_done = first_round - 1;
    for (s->round = first_round; s->round <= o->rounds; s->round++) {
        pt_round_stats rs;
        pnet_stats st0, st1;
        pt_config fit_m = {0}, eval_m = {0}, all_m = {0};
        int sampled, updated, ran, has_loss, eres = -1, efail = -1;
        double dloss = NAN, t_round = pt_now();
        pt_round_stats_init(&rs);
        rs.round = s->round;
        pnet_server_stats(s->net, 0, &st0);
        if (pst_needs_central_loss(s->st)) {
            if (isnan(last_central_loss)) {
                rc = pt_seterr(err, PT_ERR_INVAL,
                               "%s needs centralised evaluation: give the server --dataset",
                               pst_name(s->st));
                goto fail;
            }
        }
        pt_cpu_sample cpu0;
        pt_cpu_mark(&cpu0);
        rc = fit_round(s, &base, &sampled, &updated, &fit_m, err);
        if (rc) {
            pt_config_free(&fit_m);
            goto fail;
        }
        /* from the FitIns going out (waiting for clients excluded) to the aggregate */
        rs.fit_time = sampled ? pt_now() - s->t_phase : 0;
        if (sampled) t_round = s->t_phase; /* the round's clock starts with the FitIns */
        rs.clients_sampled = sampled;
        pst_fit_counts(s->st, &rs.results, &rs.failures, NULL);
        if (sampled == 0) rs.results = rs.failures = 0;
        metrics_hist_add(s, &s->fit_metrics_hist, s->round, &fit_m);
        if (!updated && sampled)
            SWARN(s, "fit_round %d: no new parameters (%d results, %d failures)", s->round,
                  rs.results, rs.failures);
        s->rounds_updated += updated != 0;
        /* centralised evaluation */
        if (s->have_test) {
            double loss, acc;
            if ((rc = central_eval(s, &loss, &acc, err))) {
                pt_config_free(&fit_m);
                goto fail;
            }
            rs.loss_centralized = loss;
            rs.accuracy_centralized = acc;
            last_central_loss = loss;
            s->central_loss = loss;
            hist_add(&s->h_cent, &s->n_cent, s->round, loss, acc);
            char n1[40], n2[40], n3[40];
            SLOG(s, "fit progress: (%d, %s, {'accuracy': %s}, %s)", s->round,
                 pyf(n1, sizeof n1, loss), pyf(n2, sizeof n2, acc),
                 pyf(n3, sizeof n3, pt_now() - s->t_start));
        }
        /* federated evaluation */
        rc = evaluate_round(s, &ran, &dloss, &has_loss, &eval_m, &eres, &efail, err);
        if (rc) {
            pt_config_free(&fit_m);
            pt_config_free(&eval_m);
            goto fail;
        }
        rs.evaluate_time = ran ? pt_now() - s->t_phase : NAN;
        rs.eval_results = ran ? eres : -1;
        rs.eval_failures = ran ? efail : -1;
        if (has_loss) {
            double acc = pt_config_number_or(&eval_m, "accuracy", NAN);
            rs.loss_distributed = dloss;
            rs.accuracy_distributed = acc;
            hist_add(&s->h_dist, &s->n_dist, s->round, dloss, acc);
            metrics_hist_add(s, &s->eval_metrics_hist, s->round, &eval_m);
        }
        pnet_server_stats(s->net, 0, &st1);
        rs.bytes_sent = (int64_t)(st1.msg_bytes_out - st0.msg_bytes_out);
        rs.bytes_received = (int64_t)(st1.msg_bytes_in - st0.msg_bytes_in);
        rs.round_time = pt_now() - t_round;
        for (size_t i = 0; i < fit_m.n; i++) {
            char k[PT_CONFIG_KEY_MAX + 16];
            snprintf(k, sizeof k, "fit_%s", fit_m.e[i].key);
            pt_config_set(&all_m, k, &fit_m.e[i].val);
        }
        for (size_t i = 0; i < eval_m.n; i++) {
            char k[PT_CONFIG_KEY_MAX + 16];
            snprintf(k, sizeof k, "evaluate_%s", eval_m.e[i].key);
            pt_config_set(&all_m, k, &eval_m.e[i].val);
        }
        {
            pt_cpu_sample cpu1;
            pt_cpu_mark(&cpu1);
            pt_config_set_double(&all_m, "server_cpu_seconds", cpu1.proc_cpu - cpu0.proc_cpu);
            pt_config_set_double(&all_m, "server_fold_seconds", s->fold_time);
            s->fold_time = 0;
        }
        rs.metrics = &all_m;
        pt_results_round(s->res, &rs);
        pt_config_free(&fit_m);
        pt_config_free(&eval_m);
        pt_config_free(&all_m);
        rounds_done = s->round;
        write_checkpoint(s, last_central_loss);
    }
    {
        char n1[40];
        SLOG(s, "FL finished in %s", pyf(n1, sizeof n1, pt_now() - s->t_start));
    }
    log_loss_hist(s, "losses_distributed", s->h_dist, s->n_dist);
    log_metrics_hist(s, "metrics_distributed_fit", &s->fit_metrics_hist);
    log_metrics_hist(s, "metrics_distributed", &s->eval_metrics_hist);
    log_loss_hist(s, "losses_centralized", s->h_cent, s->n_cent);
    {
        pt_config mc = {0};
        for (size_t i = 0; i < s->n_cent; i++) {
            pt_config one = {0};
            pt_config_set_double(&one, "accuracy", s->h_cent[i].acc);
            metrics_hist_add(s, &mc, s->h_cent[i].round, &one);
            pt_config_free(&one);
        }
        log_metrics_hist(s, "metrics_centralized", &mc);
        pt_config_free(&mc);
    }
    disconnect_all(s);
    {
        char why[PT_ERRLEN] = "";
        int wrc = save_weights(s, why);
        if ((rc = run_verdict(s, rounds_done - (first_round - 1), wrc, why, err))) {
            PT_RERROR(s->res, "%s", err);
            pt_results_run_end(s->res, pt_now() - s->t_start, rounds_done, "error", err);
            pt_config_free(&base);
            teardown(s);
            return rc;
        }
    }
    pt_results_run_end(s->res, pt_now() - s->t_start, rounds_done, "ok", NULL);
    pt_config_free(&base);
    teardown(s);
    return PT_OK;
fail:
    PT_RERROR(s->res, "%s", err && *err ? err : pt_strerror(rc));
    disconnect_all(s);
    if (rounds_done > 0) { /* the results so far */
        char why[PT_ERRLEN];
        save_weights(s, why);
        if (s->ckpt_dir)
            SLOG(s, "the run can continue from round %d with: petal server --resume %s ...",
                 rounds_done + 1, s->ckpt_dir);
    }
    pt_results_run_end(s->res, pt_now() - s->t_start, rounds_done,
                       rc == PT_ERR_INTERRUPTED ? "interrupted" : "error", err);
    pt_config_free(&base);
    teardown(s);
    return rc;
}
