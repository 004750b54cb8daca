/*
 * fuzz_h2_frames.c - the gRPC server fed frame sequences built from a small
 * program, in memory (pnet_server_adopt on a socketpair): big DATA frames
 * (the direct-receive path of net/h2.c needs frames and messages of 64 KiB
 * and more, far beyond what byte-level mutation of short inputs reaches),
 * Join streams, resets, floods and cut frames, each write a separate read
 * for the server. The connection preface, an empty SETTINGS and the ACK of
 * the server's come first.
 *
 * The input is a list of records; the first byte of each picks the op
 * (mod 8), the next bytes are its arguments (missing ones read as 0):
 *   0 RAW   n, n bytes                    the bytes as they are
 *   1 JOIN  s, f                          HEADERS with a Join request on stream
 *                                         2s+1 (f&1 END_STREAM, f&2 content-length
 *                                         = the next 2 bytes)
 *   2 DATA  s, f, L(3), A(4), fill        DATA of L bytes (capped at 1 MiB + 64)
 *                                         on stream 2s+1 with flags f&0x09: a gRPC
 *                                         prefix announcing A bytes when f&0x10,
 *                                         then fill bytes; f&0x40 sends half of it
 *   3 FRAME t, f, s, n, n bytes           any frame type t, flags f, stream s
 *   4 RST   s, code                       RST_STREAM on stream 2s+1
 *   5 REPEAT k, n, n bytes                those bytes 16k times (floods)
 *   6 CUT                                 end of this write
 *   7 MSG   s, k                          a whole gRPC message on stream 2s+1: a
 *                                         DisconnectRes, a GetParametersRes with
 *                                         two tensors, or an empty message (k%3)
 * Everything the program makes is capped at 6 MiB.
 */
#include "fuzz_h2.h"

#define OUT_CAP ((size_t)6 << 20)
#define DATA_MAX (((size_t)1 << 20) + 64)

static pnet_server *srv;
static uint8_t *out;      /* the bytes of one write */
static uint8_t join_hb[512];
static size_t join_hb_len;
static uint8_t *msgs[3];
static size_t msg_len[3];

static size_t hp_literal(uint8_t *p, const char *name, const char *value)
{
    size_t n = strlen(name), v = strlen(value);
    p[0] = 0;
    p[1] = (uint8_t)n;
    memcpy(p + 2, name, n);
    p[2 + n] = (uint8_t)v;
    memcpy(p + 3 + n, value, v);
    return 3 + n + v;
}

/* A ClientMessage through the real encoder, with the gRPC prefix. */
static void make_msg(int k, const pnet_client_out *m)
{
    size_t size, w;
    char err[PT_ERRLEN];
    if (pnet_client_out_size(m, &size, err)) abort();
    msgs[k] = malloc(5 + size);
    if (!msgs[k] || pnet_client_out_pack(m, msgs[k] + 5, size, &w, err)) abort();
    msgs[k][0] = 0;
    msgs[k][1] = (uint8_t)(w >> 24), msgs[k][2] = (uint8_t)(w >> 16);
    msgs[k][3] = (uint8_t)(w >> 8), msgs[k][4] = (uint8_t)w;
    msg_len[k] = 5 + w;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_quiet_logs();
    srv = fz_server(NULL);
    out = malloc(OUT_CAP);
    if (!out) abort();
    static const char *const h[][2] = {
        {":method", "POST"}, {":scheme", "http"}, {":path", "/flwr.proto.FlowerService/Join"},
        {":authority", "fuzz"}, {"content-type", "application/grpc"}, {"te", "trailers"}};
    for (size_t i = 0; i < sizeof h / sizeof *h; i++)
        join_hb_len += hp_literal(join_hb + join_hb_len, h[i][0], h[i][1]);
    pnet_client_out disc = {.type = PNET_CMSG_DISCONNECT, .reason = PNET_REASON_ACK};
    make_msg(0, &disc);
    pt_params p = {0};
    int nd[2] = {2, 1};
    int64_t s0[] = {3, 4}, s1[] = {5};
    const int64_t *shapes[] = {s0, s1};
    if (pt_params_init(&p, 2, nd, shapes)) abort();
    for (size_t i = 0; i < p.total; i++) p.buf[i] = (float)i * 0.5f;
    pnet_client_out gp = {.type = PNET_CMSG_GET_PARAMETERS, .params = &p};
    make_msg(1, &gp);
    pt_params_free(&p);
    msgs[2] = calloc(1, 5); /* an empty gRPC message */
    msg_len[2] = 5;
    return 0;
}

typedef struct rd {
    const uint8_t *p;
    size_t n;
} rd;

static unsigned u8(rd *r)
{
    if (!r->n) return 0;
    r->n--;
    return *r->p++;
}

static size_t un(rd *r, int bytes)
{
    size_t v = 0;
    for (int i = 0; i < bytes; i++) v = v << 8 | u8(r);
    return v;
}

typedef struct wr {
    size_t n;
} wr;

static void put(wr *w, const void *p, size_t n)
{
    if (n > OUT_CAP - w->n) n = OUT_CAP - w->n;
    memcpy(out + w->n, p, n);
    w->n += n;
}

static void fill(wr *w, uint8_t b, size_t n)
{
    if (n > OUT_CAP - w->n) n = OUT_CAP - w->n;
    memset(out + w->n, b, n);
    w->n += n;
}

static void hd(wr *w, size_t len, unsigned type, unsigned flags, uint32_t sid)
{
    uint8_t h[9] = {(uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len, (uint8_t)type,
                    (uint8_t)flags, (uint8_t)(sid >> 24 & 0x7f), (uint8_t)(sid >> 16),
                    (uint8_t)(sid >> 8), (uint8_t)sid};
    put(w, h, 9);
}

/* Run one record into the write buffer; returns 1 on CUT. */
static int record(rd *r, wr *w)
{
    unsigned op = u8(r) % 8;
    switch (op) {
    case 0: {
        size_t n = u8(r);
        if (n > r->n) n = r->n;
        put(w, r->p, n);
        r->p += n, r->n -= n;
        return 0;
    }
    case 1: {
        uint32_t sid = 2 * u8(r) + 1;
        unsigned f = u8(r);
        uint8_t cl[64];
        size_t cn = 0;
        if (f & 2) {
            char v[16];
            snprintf(v, sizeof v, "%zu", un(r, 2));
            cn = hp_literal(cl, "content-length", v);
        }
        hd(w, join_hb_len + cn, 1, 4 | (f & 1), sid);
        put(w, join_hb, join_hb_len);
        put(w, cl, cn);
        return 0;
    }
    case 2: {
        uint32_t sid = 2 * u8(r) + 1;
        unsigned f = u8(r);
        size_t len = un(r, 3), ann = un(r, 4);
        uint8_t b = (uint8_t)u8(r);
        if (len > DATA_MAX) len = DATA_MAX;
        hd(w, len, 0, f & 0x09, sid);
        size_t send = f & 0x40 ? len / 2 : len, done = 0;
        if ((f & 0x10) && send >= 5) {
            uint8_t pre[5] = {0, (uint8_t)(ann >> 24), (uint8_t)(ann >> 16), (uint8_t)(ann >> 8),
                              (uint8_t)ann};
            put(w, pre, 5);
            done = 5;
        }
        fill(w, b, send - done);
        return 0;
    }
    case 3: {
        unsigned t = u8(r), f = u8(r), s = u8(r);
        size_t n = u8(r);
        if (n > r->n) n = r->n;
        hd(w, n, t, f, s);
        put(w, r->p, n);
        r->p += n, r->n -= n;
        return 0;
    }
    case 4: {
        uint32_t sid = 2 * u8(r) + 1;
        uint8_t code[4] = {0, 0, 0, (uint8_t)u8(r)};
        hd(w, 4, 3, 0, sid);
        put(w, code, 4);
        return 0;
    }
    case 5: {
        size_t k = 16 * (size_t)u8(r), n = u8(r);
        if (n > r->n) n = r->n;
        for (size_t i = 0; i < k && n && w->n < OUT_CAP; i++) put(w, r->p, n);
        r->p += n, r->n -= n;
        return 0;
    }
    case 6: return 1;
    default: {
        uint32_t sid = 2 * u8(r) + 1;
        unsigned k = u8(r) % 3;
        hd(w, msg_len[k], 0, 0, sid);
        put(w, msgs[k], msg_len[k]);
        return 0;
    }
    }
}

/* the preface, an empty SETTINGS and the ACK of the server's (so its 64 MiB
   stream windows and 1 MiB frames apply from the first frame) */
static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0"
                              "\0\0\0\4\1\0\0\0\0";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd;
    if (fz_connect(srv, &fd)) return 0;
    double deadline = pt_now() + 5.0;
    int ok = !fz_send(srv, fd, (const uint8_t *)preface, sizeof preface - 1, deadline);
    rd r = {data, size};
    size_t total = 0;
    while (ok && r.n && total < OUT_CAP) {
        wr w = {0};
        while (r.n && !record(&r, &w) && w.n < OUT_CAP - total) {
        }
        total += w.n;
        ok = !fz_send(srv, fd, out, w.n, deadline);
        fz_pump(srv, fd);
    }
    fz_finish(srv, fd, deadline);
    return 0;
}
