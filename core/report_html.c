/* report_html.c - self-contained report.html with SVG charts (see results_int.h).
 *
 * Everything is drawn here: line charts (per-round accuracy and loss, linear
 * or log y axis), grouped bar charts (round time, per-client CPU and time),
 * tables. No scripts and no external resources; tooltips are SVG <title>s. */
#include "results_int.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const palette[] = {"#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1",
                                      "#76b7b2", "#edc948", "#ff9da7", "#9c755f", "#555555"};
#define NCOLORS (sizeof palette / sizeof palette[0])

/* Chart geometry (SVG user units; the SVG scales to the page width). */
typedef struct geom {
    double w, h; /* viewBox size */
    double mr;   /* legend column width on the right */
} geom;
static const geom WIDE = {900, 340, 0}, HALF = {560, 330, 0};
#define ML 72.0
#define MT 16.0
#define MB 52.0
/* Width of the legend column on the right, sized to the longest label. */
static double legend_width(const char *const *labels, size_t n)
{
    size_t m = 8;
    for (size_t i = 0; i < n; i++)
        if (labels[i] && strlen(labels[i]) > m) m = strlen(labels[i]);
    double w = 56.0 + 7.2 * (double)m;
    return w > 320 ? 320 : w;
}

static void esc(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* ---- axis helpers ------------------------------------------------------------ */

static double nice_step(double range, int target)
{
    if (!(range > 0)) return 1;
    double raw = range / target, mag = pow(10, floor(log10(raw))), r = raw / mag;
    double m = r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10;
    return m * mag;
}

static int decimals_for(double step)
{
    int d = (int)ceil(-log10(step) - 1e-9);
    return d < 0 ? 0 : d > 6 ? 6 : d;
}

typedef struct axis {
    double lo, hi;  /* data range shown (log10 values when log) */
    int log;
    double step;    /* linear tick step */
    double scale;   /* value multiplier for labels (100 for %) */
    const char *suffix;
} axis;

static double ax_t(const axis *a, double v)
{
    double x = a->log ? log10(v) : v;
    return a->hi > a->lo ? (x - a->lo) / (a->hi - a->lo) : 0.5;
}

/* Linear axis over [mn, mx] with about 5 ticks; from_zero pins 0. */
static void axis_linear(axis *a, double mn, double mx, int from_zero)
{
    a->log = 0;
    if (from_zero && mn > 0) mn = 0;
    if (!(mx > mn)) {
        double d = fabs(mx) > 0 ? fabs(mx) * 0.1 : 1;
        mn -= d;
        mx += d;
        if (from_zero && mn < 0 && mx > 0) mn = 0;
    }
    a->step = nice_step(mx - mn, 5);
    a->lo = floor(mn / a->step + 1e-9) * a->step;
    a->hi = ceil(mx / a->step - 1e-9) * a->step;
    if (a->hi <= a->lo) a->hi = a->lo + a->step;
}

static void axis_log(axis *a, double mn, double mx)
{
    a->log = 1;
    a->lo = floor(log10(mn));
    a->hi = ceil(log10(mx));
    if (a->hi <= a->lo) a->hi = a->lo + 1;
    a->step = 1;
}

static void fmt_val(char *buf, size_t len, const axis *a, double v, int dec)
{
    if (a->log) {
        double e = log10(v);
        if (fabs(e - round(e)) < 1e-9 && (e >= 4 || e <= -3))
            snprintf(buf, len, "1e%d", (int)round(e));
        else
            snprintf(buf, len, "%g", v);
    } else {
        snprintf(buf, len, "%.*f%s", dec, v * a->scale, a->suffix ? a->suffix : "");
    }
}

/* Horizontal grid lines and y tick labels. */
static void draw_y_axis(FILE *f, const axis *a, double x0, double y0, double w, double h)
{
    char lab[48];
    if (a->log) {
        int span = (int)(a->hi - a->lo);
        for (int e = (int)a->lo; e <= (int)a->hi; e++) {
            for (int m = 1; m <= 9; m++) {
                if (m > 1 && (span > 4 || e == (int)a->hi)) break;
                if (m > 1 && !(m == 2 || m == 5 || span <= 1)) continue;
                double v = m * pow(10, e), t = ax_t(a, v), y = y0 + h - t * h;
                if (t < -1e-9 || t > 1 + 1e-9) continue;
                fprintf(f, "<line class=\"%s\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>\n",
                        m == 1 ? "grid" : "grid minor", x0, x0 + w, y, y);
                fmt_val(lab, sizeof lab, a, v, 0);
                fprintf(f, "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                        x0 - 6, y + 4, lab);
            }
        }
        return;
    }
    int dec = decimals_for(a->step * a->scale);
    for (double v = a->lo; v <= a->hi + a->step * 1e-6; v += a->step) {
        double y = y0 + h - ax_t(a, v) * h;
        fprintf(f, "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>\n", x0,
                x0 + w, y, y);
        fmt_val(lab, sizeof lab, a, fabs(v) < a->step * 1e-9 ? 0 : v, dec);
        fprintf(f, "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                x0 - 6, y + 4, lab);
    }
}

static void svg_open(FILE *f, const geom *g, const char *aria)
{
    fprintf(f, "<svg class=\"chart\" viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"", g->w, g->h);
    esc(f, aria);
    fputs("\" xmlns=\"http://www.w3.org/2000/svg\">\n", f);
}

static void axis_titles(FILE *f, const geom *g, const char *xlabel, const char *ylabel)
{
    double pw = g->w - ML - g->mr, ph = g->h - MT - MB;
    fprintf(f, "<text class=\"axis-title\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", ML + pw / 2,
            g->h - 10);
    esc(f, xlabel);
    fprintf(f, "</text>\n<text class=\"axis-title\" transform=\"translate(16 %.1f) rotate(-90)\" "
               "text-anchor=\"middle\">",
            MT + ph / 2);
    esc(f, ylabel);
    fputs("</text>\n", f);
    fprintf(f, "<rect class=\"frame\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/>\n", ML,
            MT, pw, ph);
}

static void legend(FILE *f, const geom *g, const char *const *labels, size_t n, int dashed_from)
{
    double x = g->w - g->mr + 16, y = MT + 8;
    for (size_t i = 0; i < n; i++, y += 20) {
        const char *c = palette[i % NCOLORS];
        fprintf(f, "<g class=\"legend\"><line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" "
                   "stroke=\"%s\" stroke-width=\"3\"%s/>",
                x, x + 22, y, y, c,
                dashed_from >= 0 && (int)i >= dashed_from ? " stroke-dasharray=\"5 3\"" : "");
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">", x + 28, y + 4);
        esc(f, labels[i]);
        fputs("</text></g>\n", f);
    }
}

static void no_data(FILE *f, const char *what)
{
    fputs("<p class=\"nodata\">No data for ", f);
    esc(f, what);
    fputs(".</p>\n", f);
}

/* ---- line chart -------------------------------------------------------------- */

typedef struct series {
    const char *label;
    size_t n;
    double *x, *y; /* NAN y = gap */
} series;

/* logy: -1 auto, 0, 1. pct: show y as percent (values 0..1). */
static void line_chart(FILE *f, geom *g, const char *title, const char *xlabel, const char *ylabel,
                       const series *s, size_t ns, int logy, int pct)
{
    double xmn = INFINITY, xmx = -INFINITY, ymn = INFINITY, ymx = -INFINITY, ypos = INFINITY;
    size_t pts = 0;
    for (size_t i = 0; i < ns; i++)
        for (size_t k = 0; k < s[i].n; k++) {
            if (!isfinite(s[i].y[k])) continue;
            pts++;
            xmn = fmin(xmn, s[i].x[k]);
            xmx = fmax(xmx, s[i].x[k]);
            ymn = fmin(ymn, s[i].y[k]);
            ymx = fmax(ymx, s[i].y[k]);
            if (s[i].y[k] > 0) ypos = fmin(ypos, s[i].y[k]);
        }
    if (pts == 0) {
        no_data(f, title);
        return;
    }
    {
        const char *ls[64];
        size_t nl = ns < 64 ? ns : 64;
        for (size_t i = 0; i < nl; i++) ls[i] = s[i].label;
        g->mr = legend_width(ls, nl);
    }
    if (logy < 0) logy = !pct && ymn > 0 && ymx / ymn >= 100.0;
    if (logy && !(ypos < INFINITY)) logy = 0;
    axis ya = {0}, xa = {0};
    ya.scale = pct ? 100 : 1;
    ya.suffix = pct ? "%" : "";
    if (logy) axis_log(&ya, ypos, ymx);
    else axis_linear(&ya, ymn, ymx, 0);
    xa.scale = 1;
    if (xmx - xmn <= 20) {
        xa.lo = floor(xmn);
        xa.hi = ceil(xmx) > xa.lo ? ceil(xmx) : xa.lo + 1;
        xa.step = 1;
    } else {
        axis_linear(&xa, xmn, xmx, 0);
    }
    double pw = g->w - ML - g->mr, ph = g->h - MT - MB;
    svg_open(f, g, title);
    draw_y_axis(f, &ya, ML, MT, pw, ph);
    /* x ticks */
    for (double v = xa.lo; v <= xa.hi + 1e-9; v += xa.step) {
        double x = ML + ax_t(&xa, v) * pw;
        fprintf(f, "<line class=\"xtick\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>\n", x, x,
                MT + ph, MT + ph + 5);
        fprintf(f, "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", x,
                MT + ph + 19, v);
    }
    axis_titles(f, g, xlabel, ylabel);
    const char **labels = calloc(ns ? ns : 1, sizeof *labels);
    for (size_t i = 0; i < ns; i++) {
        const char *c = palette[i % NCOLORS];
        int open = 0;
        if (labels) labels[i] = s[i].label;
        for (size_t k = 0; k < s[i].n; k++) {
            double v = s[i].y[k];
            int ok = isfinite(v) && (!logy || v > 0);
            if (!ok) {
                if (open) fputs("\"/>\n", f);
                open = 0;
                continue;
            }
            double x = ML + ax_t(&xa, s[i].x[k]) * pw, y = MT + ph - ax_t(&ya, v) * ph;
            if (!open)
                fprintf(f, "<polyline class=\"series\" stroke=\"%s\" points=\"", c);
            fprintf(f, "%.1f,%.1f ", x, y);
            open = 1;
        }
        if (open) fputs("\"/>\n", f);
        for (size_t k = 0; k < s[i].n; k++) {
            double v = s[i].y[k];
            if (!isfinite(v) || (logy && v <= 0)) continue;
            double x = ML + ax_t(&xa, s[i].x[k]) * pw, y = MT + ph - ax_t(&ya, v) * ph;
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>", x, y, c);
            esc(f, s[i].label);
            if (pct) fprintf(f, ", round %g: %.2f%%</title></circle>\n", s[i].x[k], v * 100);
            else fprintf(f, ", round %g: %.6g</title></circle>\n", s[i].x[k], v);
        }
    }
    if (labels) legend(f, g, labels, ns, -1);
    free(labels);
    if (logy)
        fprintf(f, "<text class=\"note\" x=\"%.1f\" y=\"%.1f\">log scale</text>\n", ML + 6,
                MT + 14);
    fputs("</svg>\n", f);
}

/* ---- grouped bar chart ---------------------------------------------------------- */

/* vals[g * ns + s]; NAN = no bar. */
static void bar_chart(FILE *f, geom *gm, const char *title, const char *xlabel, const char *ylabel,
                      const char *const *groups, size_t ng, const char *const *slabels, size_t ns,
                      const double *vals, const char *unit)
{
    double mx = 0;
    size_t nbars = 0;
    for (size_t i = 0; i < ng * ns; i++)
        if (isfinite(vals[i])) {
            nbars++;
            if (vals[i] > mx) mx = vals[i];
        }
    if (nbars == 0 || ng == 0 || ns == 0) {
        no_data(f, title);
        return;
    }
    gm->mr = legend_width(slabels, ns);
    axis ya = {0};
    ya.scale = 1;
    ya.suffix = "";
    axis_linear(&ya, 0, mx > 0 ? mx * 1.08 : 1, 1); /* headroom for value labels */
    double pw = gm->w - ML - gm->mr, ph = gm->h - MT - MB, gw = pw / (double)ng;
    double bw = fmin(gw * 0.8 / (double)ns, 48);
    svg_open(f, gm, title);
    draw_y_axis(f, &ya, ML, MT, pw, ph);
    for (size_t g = 0; g < ng; g++) {
        double gx = ML + gw * (double)g, cx = gx + gw / 2;
        double start = cx - bw * (double)ns / 2;
        for (size_t s = 0; s < ns; s++) {
            double v = vals[g * ns + s];
            if (!isfinite(v)) continue;
            double h = ax_t(&ya, v < 0 ? 0 : v) * ph, x = start + bw * (double)s;
            fprintf(f, "<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                       "fill=\"%s\"><title>",
                    x + 1, MT + ph - h, bw - 2 > 1 ? bw - 2 : 1, h, palette[s % NCOLORS]);
            esc(f, groups[g]);
            fputs(" \xc2\xb7 ", f);
            esc(f, slabels[s]);
            fprintf(f, ": %.4g %s</title></rect>\n", v, unit);
            if (nbars <= 24 && bw >= 22)
                fprintf(f, "<text class=\"barval\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">"
                           "%.3g</text>\n",
                        x + bw / 2, MT + ph - h - 4, v);
        }
        /* group label, shortened to fit */
        char lab[64];
        size_t maxc = (size_t)(gw / 7.0);
        snprintf(lab, sizeof lab, "%s", groups[g]);
        if (maxc >= 4 && strlen(lab) > maxc) {
            lab[maxc - 1] = '\0';
            strcat(lab, "\xe2\x80\xa6");
        }
        fprintf(f, "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", cx,
                MT + ph + 19);
        esc(f, lab);
        fputs("</text>\n", f);
    }
    axis_titles(f, gm, xlabel, ylabel);
    legend(f, gm, slabels, ns, -1);
    fputs("</svg>\n", f);
}

/* ---- helpers over the run set ------------------------------------------------------ */

static void fmt_num(char *b, size_t n, double v, const char *fmt)
{
    if (isnan(v)) snprintf(b, n, "&ndash;");
    else snprintf(b, n, fmt, v);
}

typedef struct labels {
    char **v;
    size_t n;
} labels;

static void labels_free(labels *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
}

static int run_labels(const pt_runset *set, labels *out)
{
    out->n = 0;
    out->v = calloc(set->n ? set->n : 1, sizeof *out->v);
    if (!out->v) return PT_ERR_NOMEM;
    for (size_t i = 0; i < set->n; i++) {
        char b[200];
        pt_runset_label(set, i, b, sizeof b);
        if (!(out->v[i] = strdup(b))) return PT_ERR_NOMEM;
        out->n++;
    }
    return PT_OK;
}

/* Distinct client sources over all runs, sorted naturally (client_2 < client_10). */
static int natcmp_raw(const char *x, const char *y)
{
    while (*x && *y) {
        if (*x >= '0' && *x <= '9' && *y >= '0' && *y <= '9') {
            char *ex, *ey;
            unsigned long long vx = strtoull(x, &ex, 10), vy = strtoull(y, &ey, 10);
            if (vx != vy) return vx < vy ? -1 : 1;
            x = ex;
            y = ey;
            continue;
        }
        if (*x != *y) return (unsigned char)*x - (unsigned char)*y;
        x++;
        y++;
    }
    return (unsigned char)*x - (unsigned char)*y;
}

/* natural order, then bytewise ("client_02" and "client_2" are two clients) */
static int natcmp(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    int c = natcmp_raw(x, y);
    return c ? c : strcmp(x, y);
}

/* Every distinct client of the set (interned at load), sorted naturally;
 * rank[cid] = its position (out->n entries). */
static int client_list(const pt_runset *set, labels *out, size_t **rank)
{
    size_t n = set->n_clients;
    out->n = 0;
    out->v = malloc((n ? n : 1) * sizeof *out->v);
    *rank = malloc((n ? n : 1) * sizeof **rank);
    if (!out->v || !*rank) return PT_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) out->v[i] = set->clients[i]; /* sorted, then copied */
    qsort(out->v, n, sizeof *out->v, natcmp);
    for (size_t i = 0; i < n; i++) {
        const char *s = out->v[i];
        if (!(out->v[i] = strdup(s))) return PT_ERR_NOMEM;
        out->n++;
    }
    /* rank: each set->clients[cid] found in the sorted list by binary search */
    for (size_t cid = 0; cid < n; cid++) {
        const char *key = set->clients[cid];
        const char **hit = bsearch(&key, out->v, n, sizeof *out->v, natcmp);
        (*rank)[cid] = hit ? (size_t)(hit - (const char **)out->v) : 0;
    }
    return PT_OK;
}

/* One run's per-client figures, in one pass over its records. */
typedef struct cagg {
    double sum[2][3]; /* [evaluate][0 cpu%, 1 wall time, 2 system cpu%] */
    int cnt[2][3];
    int fits, seen;
    double ex, rss;
} cagg;

/* Fill agg[cid] for the clients of r (agg has set->n_clients zeroed
 * entries; touched[] gets the cids seen, *nt their count). */
static void run_aggregate(const pt_run_data *r, cagg *agg, int *touched, size_t *nt)
{
    *nt = 0;
    for (size_t k = 0; k < r->n_cl; k++) {
        const pt_client_rec *c = &r->cl[k];
        cagg *a = &agg[c->cid];
        if (!a->seen) {
            a->seen = 1;
            a->ex = a->rss = NAN;
            touched[(*nt)++] = c->cid;
        }
        double v[3] = {c->cpu_process_percent, c->wall_time, c->cpu_system_percent};
        for (int w = 0; w < 3; w++)
            if (!isnan(v[w])) {
                a->sum[c->evaluate][w] += v[w];
                a->cnt[c->evaluate][w]++;
            }
        if (!c->evaluate) {
            a->fits++;
            if (!isnan(c->examples)) a->ex = c->examples;
        }
        if (!isnan(c->peak_rss_bytes) && (isnan(a->rss) || c->peak_rss_bytes > a->rss))
            a->rss = c->peak_rss_bytes;
    }
}

static void run_aggregate_clear(cagg *agg, const int *touched, size_t nt)
{
    for (size_t i = 0; i < nt; i++) memset(&agg[touched[i]], 0, sizeof *agg);
}

static double agg_mean(const cagg *a, int evaluate, int which)
{
    return a->cnt[evaluate][which] ? a->sum[evaluate][which] / a->cnt[evaluate][which] : NAN;
}

static const char css[] =
    "*{box-sizing:border-box}"
    "body{margin:0;background:#f5f6f8;color:#1f2328;"
    "font:15px/1.5 -apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif}"
    "main{max-width:1200px;margin:0 auto;padding:24px 28px 48px}"
    "header{margin-bottom:8px}"
    "h1{font-size:26px;margin:0 0 4px}"
    "h2{font-size:18px;margin:0 0 2px}"
    ".sub{color:#59636e;margin:0 0 14px;font-size:14px}"
    ".meta{color:#59636e;font-size:13px}"
    ".card{background:#fff;border:1px solid #d8dee4;border-radius:8px;padding:16px 18px;"
    "margin:16px 0;box-shadow:0 1px 2px rgba(0,0,0,.04)}"
    ".grid2{display:grid;grid-template-columns:1fr 1fr;gap:0 16px}"
    "@media (max-width:900px){.grid2{grid-template-columns:1fr}}"
    ".grid2 .card{margin:8px 0}"
    "svg.chart{width:100%;height:auto;display:block}"
    "svg text{font-family:inherit;fill:#1f2328}"
    ".tick{font-size:12px;fill:#59636e}"
    ".axis-title{font-size:13px;font-weight:600}"
    ".grid{stroke:#e4e7eb;stroke-width:1}"
    ".grid.minor{stroke:#f0f2f4}"
    ".xtick{stroke:#8c959f}"
    ".frame{fill:none;stroke:#8c959f;stroke-width:1}"
    ".series{fill:none;stroke-width:2.5;stroke-linejoin:round;stroke-linecap:round}"
    ".legend text{font-size:13px}"
    ".barval{font-size:11px;fill:#3d444d}"
    ".note{font-size:12px;fill:#8c959f;font-style:italic}"
    "table{border-collapse:collapse;width:100%;font-size:13px}"
    "th,td{padding:6px 8px;border-bottom:1px solid #e4e7eb;text-align:right;white-space:nowrap}"
    "th{background:#f6f8fa;font-weight:600;color:#3d444d;white-space:normal}"
    "th:first-child,td:first-child{text-align:left}"
    "td.l,th.l{text-align:left}"
    "tr:hover td{background:#fafbfc}"
    ".swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}"
    ".nodata{color:#8c959f;font-style:italic;padding:24px 0;text-align:center}"
    ".warn{background:#fff8e6;border-color:#f0d78c}"
    ".scroll{overflow-x:auto}"
    "footer{color:#8c959f;font-size:12px;margin-top:24px}";

static void card_open(FILE *f, const char *title, const char *sub)
{
    fputs("<section class=\"card\"><h2>", f);
    esc(f, title);
    fputs("</h2>", f);
    if (sub) {
        fputs("<p class=\"sub\">", f);
        esc(f, sub);
        fputs("</p>", f);
    }
    fputc('\n', f);
}

/* Per-round series of one field of pt_round_rec for every run. */
static int round_series(const pt_runset *set, const labels *lab, size_t off, int with0,
                        series **out)
{
    series *s = calloc(set->n ? set->n : 1, sizeof *s);
    if (!s) return PT_ERR_NOMEM;
    for (size_t i = 0; i < set->n; i++) {
        const pt_run_data *r = &set->runs[i];
        size_t n = r->n_rounds + (with0 && r->has_round0 ? 1 : 0), k = 0;
        s[i].label = lab->v[i];
        s[i].x = malloc((n ? n : 1) * sizeof(double));
        s[i].y = malloc((n ? n : 1) * sizeof(double));
        if (!s[i].x || !s[i].y) {
            *out = s;
            return PT_ERR_NOMEM;
        }
        if (with0 && r->has_round0) {
            s[i].x[k] = 0;
            s[i].y[k++] = *(const double *)((const char *)&r->round0 + off);
        }
        for (size_t j = 0; j < r->n_rounds; j++) {
            s[i].x[k] = r->rounds[j].round;
            s[i].y[k++] = *(const double *)((const char *)&r->rounds[j] + off);
        }
        s[i].n = k;
    }
    *out = s;
    return PT_OK;
}

static void series_free(series *s, size_t n)
{
    if (!s) return;
    for (size_t i = 0; i < n; i++) {
        free(s[i].x);
        free(s[i].y);
    }
    free(s);
}

static int any_value(const series *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < s[i].n; k++)
            if (isfinite(s[i].y[k])) return 1;
    return 0;
}

static int chart_rounds(FILE *f, const pt_runset *set, const labels *lab, size_t off,
                        const char *title, const char *sub, const char *ylabel, int logy, int pct,
                        int skip_if_empty)
{
    series *s = NULL;
    int rc = round_series(set, lab, off, 1, &s);
    if (rc == PT_OK && !(skip_if_empty && !any_value(s, set->n))) {
        card_open(f, title, sub);
        geom g = WIDE;
        line_chart(f, &g, title, "Round", ylabel, s, set->n, logy, pct);
        fputs("</section>\n", f);
    }
    series_free(s, set->n);
    return rc;
}

static void summary_table(FILE *f, const pt_runset *set, const labels *lab)
{
    card_open(f, "Summary", "Centralised evaluation on the server's held-out split; times in seconds");
    fputs("<div class=\"scroll\"><table><thead><tr><th>Run</th><th>Clients</th>"
          "<th>Rounds</th><th>Final accuracy</th><th>Best accuracy</th><th>Final loss</th>"
          "<th>Mean round time</th><th>Total time</th><th>Failures</th><th class=\"l\">Status</th>"
          "</tr></thead><tbody>\n",
          f);
    for (size_t i = 0; i < set->n; i++) {
        const pt_run_data *r = &set->runs[i];
        pt_run_summary s;
        char a[64], b[64], c[64], d[64], e[64], rounds[64];
        pt_run_summarize(r, &s);
        fmt_num(a, sizeof a, s.final_accuracy * 100, "%.2f%%");
        if (isnan(s.best_accuracy)) fmt_num(b, sizeof b, NAN, "");
        else snprintf(b, sizeof b, "%.2f%% (r%d)", s.best_accuracy * 100, s.best_round);
        fmt_num(c, sizeof c, s.final_loss, "%.4g");
        fmt_num(d, sizeof d, s.mean_round_time, "%.2f s");
        fmt_num(e, sizeof e, r->total_time, "%.1f s");
        if (r->rounds_requested >= 0)
            snprintf(rounds, sizeof rounds, "%d / %d", s.rounds_completed, r->rounds_requested);
        else
            snprintf(rounds, sizeof rounds, "%d", s.rounds_completed);
        fprintf(f, "<tr><td><span class=\"swatch\" style=\"background:%s\"></span>",
                palette[i % NCOLORS]);
        esc(f, lab->v[i]);
        fprintf(f, "</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td>"
                   "<td>%s</td><td>%d</td><td class=\"l\">",
                s.clients, rounds, a, b, c, d, e, r->n_failures);
        esc(f, r->has_end ? r->status : "incomplete");
        fputs("</td></tr>\n", f);
    }
    fputs("</tbody></table></div></section>\n", f);
}

static size_t *g_rank; /* for sorting one run's cids by their natural order */

static int cmp_rank(const void *a, const void *b)
{
    size_t x = g_rank[*(const int *)a], y = g_rank[*(const int *)b];
    return (x > y) - (x < y);
}

static void client_table(FILE *f, const pt_runset *set, const labels *lab, const size_t *rank)
{
    int any = 0;
    for (size_t i = 0; i < set->n; i++) any |= set->runs[i].n_cl > 0;
    if (!any) return;
    cagg *agg = calloc(set->n_clients ? set->n_clients : 1, sizeof *agg);
    int *touched = malloc((set->n_clients ? set->n_clients : 1) * sizeof *touched);
    if (!agg || !touched) {
        free(agg);
        free(touched);
        return;
    }
    card_open(f, "Clients",
              "Means over rounds. CPU: process (may exceed 100% on several cores) / whole machine");
    fputs("<div class=\"scroll\"><table><thead><tr><th>Run</th><th>Client</th><th>Fits</th>"
          "<th>Fit time</th><th>Fit CPU</th><th>Evaluate time</th><th>Evaluate CPU</th>"
          "<th>Examples</th><th>Peak RSS</th></tr></thead><tbody>\n",
          f);
    for (size_t i = 0; i < set->n; i++) {
        const pt_run_data *r = &set->runs[i];
        size_t nt;
        run_aggregate(r, agg, touched, &nt);
        g_rank = (size_t *)rank;
        qsort(touched, nt, sizeof *touched, cmp_rank);
        for (size_t t = 0; t < nt; t++) {
            const cagg *a = &agg[touched[t]];
            char t1[48], p1[48], s1[48], t2[48], p2[48], s2[48], e[48], m[48];
            fmt_num(t1, sizeof t1, agg_mean(a, 0, 1), "%.2f s");
            fmt_num(p1, sizeof p1, agg_mean(a, 0, 0), "%.0f%%");
            fmt_num(s1, sizeof s1, agg_mean(a, 0, 2), "%.0f%%");
            fmt_num(t2, sizeof t2, agg_mean(a, 1, 1), "%.2f s");
            fmt_num(p2, sizeof p2, agg_mean(a, 1, 0), "%.0f%%");
            fmt_num(s2, sizeof s2, agg_mean(a, 1, 2), "%.0f%%");
            fmt_num(e, sizeof e, a->ex, "%.0f");
            fmt_num(m, sizeof m, a->rss / 1048576.0, "%.0f MiB");
            fputs("<tr><td>", f);
            esc(f, lab->v[i]);
            fputs("</td><td class=\"l\">", f);
            esc(f, set->clients[touched[t]]);
            fprintf(f, "</td><td>%d</td><td>%s</td><td>%s / %s</td><td>%s</td><td>%s / %s</td>"
                       "<td>%s</td><td>%s</td></tr>\n",
                    a->fits, t1, p1, s1, t2, p2, s2, e, m);
        }
        run_aggregate_clear(agg, touched, nt);
    }
    fputs("</tbody></table></div></section>\n", f);
    free(agg);
    free(touched);
}

/* Grouped bars: group = run, series = client (the first CHART_CLIENTS in
 * natural order: more bars than that are not a chart; the table has all). */
#define CHART_CLIENTS 64
static int client_bars(FILE *f, const pt_runset *set, const labels *lab, const labels *cl,
                       const size_t *rank, int evaluate, int which, const char *title,
                       const char *ylabel, const char *unit)
{
    size_t nc = cl->n < CHART_CLIENTS ? cl->n : CHART_CLIENTS, nv = set->n * nc, nt;
    double *v = malloc((nv ? nv : 1) * sizeof *v);
    cagg *agg = calloc(set->n_clients ? set->n_clients : 1, sizeof *agg);
    int *touched = malloc((set->n_clients ? set->n_clients : 1) * sizeof *touched);
    if (!v || !agg || !touched) {
        free(v);
        free(agg);
        free(touched);
        return PT_ERR_NOMEM;
    }
    for (size_t i = 0; i < nv; i++) v[i] = NAN;
    for (size_t i = 0; i < set->n; i++) {
        run_aggregate(&set->runs[i], agg, touched, &nt);
        for (size_t t = 0; t < nt; t++)
            if (rank[touched[t]] < nc)
                v[i * nc + rank[touched[t]]] = agg_mean(&agg[touched[t]], evaluate, which);
        run_aggregate_clear(agg, touched, nt);
    }
    fputs("<section class=\"card\"><h2>", f);
    esc(f, title);
    fputs("</h2>\n", f);
    if (nc < cl->n)
        fprintf(f, "<p class=\"sub\">The first %zu of %zu clients; the table below has all.</p>\n",
                nc, cl->n);
    geom g = HALF;
    bar_chart(f, &g, title, "Run", ylabel, (const char *const *)lab->v, set->n,
              (const char *const *)cl->v, nc, v, unit);
    fputs("</section>\n", f);
    free(v);
    free(agg);
    free(touched);
    return PT_OK;
}

int pt_report_write_html(const pt_runset *set, const char *path, const pt_report_opts *o,
                         char *err)
{
    labels lab = {0}, cl = {0};
    int rc;
    FILE *f;
    const char *title = o && o->title ? o->title : "Petal federated-learning report";
    int logy = o ? o->log_loss : -1;
    char ts[40];
    if (!set || !path) return pt_seterr(err, PT_ERR_INVAL, "NULL argument");
    size_t *rank = NULL;
    if ((rc = run_labels(set, &lab)) != PT_OK || (rc = client_list(set, &cl, &rank)) != PT_OK) {
        pt_seterr(err, rc, "report: out of memory");
        goto out;
    }
    char e2[PT_ERRLEN];
    if (!(f = pt_fopen_write(path, e2))) {
        rc = pt_seterr(err, PT_ERR_IO, "cannot write %s", e2);
        goto out;
    }
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n<title>",
          f);
    esc(f, title);
    fprintf(f, "</title>\n<style>%s</style></head>\n<body><main>\n<header><h1>", css);
    esc(f, title);
    fputs("</h1>\n<p class=\"meta\">", f);
    {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(ts, sizeof ts, "%Y-%m-%d %H:%M UTC", &tm);
    }
    /* model / dataset line from the first run that has them */
    const char *model = "", *dataset = "";
    for (size_t i = 0; i < set->n; i++)
        if (set->runs[i].model[0]) {
            model = set->runs[i].model;
            dataset = set->runs[i].dataset;
            break;
        }
    fprintf(f, "%zu run%s", set->n, set->n == 1 ? "" : "s");
    if (model[0]) {
        fputs(" &middot; model ", f);
        esc(f, model);
    }
    if (dataset[0]) {
        fputs(" &middot; dataset ", f);
        esc(f, dataset);
    }
    for (size_t i = 0; i < set->n; i++) { /* distinct backends, in order */
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = !strcmp(set->runs[j].backend, set->runs[i].backend);
        if (seen || !set->runs[i].backend[0]) continue;
        fputs(i == 0 ? " &middot; backend " : ", ", f);
        esc(f, set->runs[i].backend);
    }
    fprintf(f, " &middot; generated %s by petal</p></header>\n", ts);
    if (set->bad_lines)
        fprintf(f, "<section class=\"card warn\">%zu malformed line%s in events.jsonl "
                   "(e.g. from a process stopped mid-write) %s skipped.</section>\n",
                set->bad_lines, set->bad_lines == 1 ? "" : "s",
                set->bad_lines == 1 ? "was" : "were");

    summary_table(f, set, &lab);
    rc = chart_rounds(f, set, &lab, offsetof(pt_round_rec, accuracy_centralized),
                      "Centralised accuracy", "Server-side evaluation after each round (round 0: "
                      "initial model)", "Accuracy", 0, 1, 0);
    if (rc == PT_OK)
        rc = chart_rounds(f, set, &lab, offsetof(pt_round_rec, loss_centralized),
                          "Centralised loss", "Cross-entropy on the held-out split", "Loss",
                          logy, 0, 0);
    if (rc == PT_OK)
        rc = chart_rounds(f, set, &lab, offsetof(pt_round_rec, accuracy_distributed),
                          "Distributed accuracy",
                          "Clients' validation accuracy, weighted by examples", "Accuracy", 0, 1,
                          1);
    if (rc == PT_OK)
        rc = chart_rounds(f, set, &lab, offsetof(pt_round_rec, loss_distributed),
                          "Distributed loss", "Clients' validation loss, weighted by examples",
                          "Loss", logy, 0, 1);
    /* round time: bars grouped by round (few rounds) or lines */
    size_t maxr = 0;
    for (size_t i = 0; i < set->n && rc == PT_OK; i++)
        for (size_t k = 0; k < set->runs[i].n_rounds; k++)
            if ((size_t)set->runs[i].rounds[k].round > maxr)
                maxr = (size_t)set->runs[i].rounds[k].round;
    if (rc == PT_OK && maxr > 0 && maxr <= 12) {
        double *v = malloc(maxr * set->n * sizeof *v);
        char **g = calloc(maxr, sizeof *g);
        if (!v || !g) rc = PT_ERR_NOMEM;
        for (size_t k = 0; rc == PT_OK && k < maxr; k++) {
            char b[32];
            snprintf(b, sizeof b, "Round %zu", k + 1);
            if (!(g[k] = strdup(b))) rc = PT_ERR_NOMEM;
            for (size_t i = 0; i < set->n; i++) {
                v[k * set->n + i] = NAN;
                for (size_t j = 0; j < set->runs[i].n_rounds; j++)
                    if ((size_t)set->runs[i].rounds[j].round == k + 1)
                        v[k * set->n + i] = set->runs[i].rounds[j].round_time;
            }
        }
        if (rc == PT_OK) {
            card_open(f, "Round time", "Wall time of each round (fit + evaluate), seconds");
            geom gm = WIDE;
            bar_chart(f, &gm, "Round time", "Round", "Seconds", (const char *const *)g, maxr,
                      (const char *const *)lab.v, set->n, v, "s");
            fputs("</section>\n", f);
        }
        for (size_t k = 0; g && k < maxr; k++) free(g[k]);
        free(g);
        free(v);
    } else if (rc == PT_OK) {
        rc = chart_rounds(f, set, &lab, offsetof(pt_round_rec, round_time), "Round time",
                          "Wall time of each round (fit + evaluate)", "Seconds", 0, 0, 0);
    }
    if (rc == PT_OK) {
        fputs("<div class=\"grid2\">\n", f);
        rc = client_bars(f, set, &lab, &cl, rank, 0, 0, "Client CPU during fit", "Process CPU (%)", "%");
        if (rc == PT_OK)
            rc = client_bars(f, set, &lab, &cl, rank, 1, 0, "Client CPU during evaluate",
                             "Process CPU (%)", "%");
        if (rc == PT_OK)
            rc = client_bars(f, set, &lab, &cl, rank, 0, 1, "Client fit time", "Seconds", "s");
        if (rc == PT_OK)
            rc = client_bars(f, set, &lab, &cl, rank, 1, 1, "Client evaluate time", "Seconds", "s");
        fputs("</div>\n", f);
    }
    if (rc == PT_OK) client_table(f, set, &lab, rank);
    fputs("<footer>Drawn by petal report. Data: metrics.csv (tidy) and summary.json beside this "
          "file; raw events in each run's events.jsonl.</footer>\n</main></body></html>\n",
          f);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        if (rc == PT_OK) rc = pt_seterr(err, PT_ERR_IO, "writing %s failed", path);
    } else if (rc != PT_OK) {
        pt_seterr(err, rc, "report: out of memory");
    }
out:
    labels_free(&lab);
    labels_free(&cl);
    free(rank);
    return rc;
}

int pt_report_build(const char *dir, const pt_report_opts *o, char *err)
{
    pt_runset set = {0};
    char path[4200];
    int rc = pt_runset_load(&set, dir, err);
    if (rc != PT_OK) return rc;
    snprintf(path, sizeof path, "%s/metrics.csv", dir);
    if ((rc = pt_runset_write_csv(&set, path, err)) != PT_OK) goto out;
    snprintf(path, sizeof path, "%s/summary.json", dir);
    if ((rc = pt_runset_write_summary(&set, path, err)) != PT_OK) goto out;
    snprintf(path, sizeof path, "%s/report.html", dir);
    rc = pt_report_write_html(&set, path, o, err);
out:
    pt_runset_free(&set);
    return rc;
}
