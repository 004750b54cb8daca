/* image.c - JPEG (libjpeg) and PNG (libpng) decoding from memory into 8-bit
 * HWC pixels, and conversion to float at a target size and channel count. */
#include "image_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

void pd_img_free(pd_img *im)
{
    free(im->px);
    free(im->fbuf);
    memset(im, 0, sizeof *im);
}

static uint64_t max_pixels_of(const pd_img_limits *lim)
{
    return lim && lim->max_pixels ? lim->max_pixels : PD_MAX_PIXELS_DEFAULT;
}

/* The declared size against the pixel cap, before anything is allocated. */
static int check_declared(const char *fmt, uint64_t w, uint64_t h, const pd_img_limits *lim,
                          char *why)
{
    uint64_t cap = max_pixels_of(lim);
    if (w == 0 || h == 0) return pt_seterr(why, PT_ERR_FORMAT, "%s: image of %llux%llu pixels",
                                           fmt, (unsigned long long)w, (unsigned long long)h);
    if (w * h > cap)
        return pt_seterr(why, PT_ERR_RANGE,
                         "%s: header declares %llux%llu = %llu pixels, more than the %llu "
                         "allowed (--max-image-pixels)",
                         fmt, (unsigned long long)w, (unsigned long long)h,
                         (unsigned long long)(w * h), (unsigned long long)cap);
    return PT_OK;
}

static int img_reserve(pd_img *im, int w, int h, int c, char *why)
{
    size_t need = (size_t)w * (size_t)h * (size_t)c;
    if (need > im->cap) {
        unsigned char *p = realloc(im->px, need);
        if (!p) return pt_seterr(why, PT_ERR_NOMEM, "out of memory for a %dx%d image", w, h);
        im->px = p;
        im->cap = need;
    }
    im->w = w;
    im->h = h;
    im->c = c;
    return PT_OK;
}

/* ---- JPEG -------------------------------------------------------------------- */

typedef struct jerr {
    struct jpeg_error_mgr pub;
    struct jpeg_progress_mgr prog;
    jmp_buf jb;
    char *why;
    int max_scans;
    int rc; /* what the longjmp means */
    int warnings;
    char first_warning[JMSG_LENGTH_MAX];
} jerr;

static void j_error_exit(j_common_ptr ci)
{
    jerr *e = (jerr *)ci->err;
    char msg[JMSG_LENGTH_MAX];
    e->pub.format_message(ci, msg);
    if (e->pub.msg_code == JERR_OUT_OF_MEMORY)
        e->rc = pt_seterr(e->why, PT_ERR_RANGE, "JPEG: needs more than the %llu bytes libjpeg may use "
                  "for an image of the allowed size (%s)",
                  (unsigned long long)ci->mem->max_memory_to_use, msg);
    else
        e->rc = pt_seterr(e->why, PT_ERR_FORMAT, "JPEG: %s", msg);
    longjmp(e->jb, 1);
}

/* Warnings (level -1). libjpeg-turbo's advice for untrusted input (its
 * djpeg -strict, CVE-2019-13960): treat the ones that mean missing data as
 * fatal, right away, so a file that ends early costs what it holds, not what
 * its header declares. Others (extraneous bytes, unknown JFIF revisions) are
 * counted and named; past PD_JPEG_MAX_WARNINGS the file is refused. */
static void j_emit(j_common_ptr ci, int level)
{
    jerr *e = (jerr *)ci->err;
    if (level >= 0) return; /* trace messages */
    int code = e->pub.msg_code;
    e->pub.num_warnings++;
    if (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER) {
        e->rc = pt_seterr(e->why, PT_ERR_FORMAT, "JPEG: data ends early (truncated file)");
        longjmp(e->jb, 1);
    }
    if (e->warnings++ == 0) e->pub.format_message(ci, e->first_warning);
    if (e->warnings > PD_JPEG_MAX_WARNINGS) {
        e->rc = pt_seterr(e->why, PT_ERR_FORMAT, "JPEG: more than %d libjpeg warnings (first: %s)",
                  PD_JPEG_MAX_WARNINGS, e->first_warning);
        longjmp(e->jb, 1);
    }
}

/* djpeg -maxscans: libjpeg-turbo's way to bound a progressive JPEG's work
 * (each scan is a pass over the whole image; thousands of scans of EOB runs
 * cost seconds for a few hundred bytes). */
static void j_progress(j_common_ptr ci)
{
    jerr *e = (jerr *)ci->err;
    j_decompress_ptr d = (j_decompress_ptr)ci;
    if (ci->is_decompressor && d->input_scan_number > e->max_scans) {
        e->rc = pt_seterr(e->why, PT_ERR_RANGE,
                  "JPEG: progressive image with more than %d scans (--max-jpeg-scans)",
                  e->max_scans);
        longjmp(e->jb, 1);
    }
}

/* A Huffman-coded JPEG spends at least one bit on every 8x8 block's DC
 * coefficient in its first DC scan, and every MCU holds a block of each
 * component: a file of len bytes cannot complete an image of more than
 * 8 * len MCUs. Such a header claims data the file does not hold (it would
 * end early and be refused anyway): refused now, before libjpeg allocates
 * buffers for the claimed size. Arithmetic coding can spend less than a
 * bit, so it is not checked here. */
static int check_data_size(const struct jpeg_decompress_struct *ci, size_t len, char *why)
{
    if (ci->arith_code || ci->num_components < 1) return PT_OK;
    int mh = 1, mv = 1;
    for (int i = 0; i < ci->num_components; i++) {
        if (ci->comp_info[i].h_samp_factor > mh) mh = ci->comp_info[i].h_samp_factor;
        if (ci->comp_info[i].v_samp_factor > mv) mv = ci->comp_info[i].v_samp_factor;
    }
    uint64_t mcus = (((uint64_t)ci->image_width + 8u * mh - 1) / (8u * mh)) *
                    (((uint64_t)ci->image_height + 8u * mv - 1) / (8u * mv));
    if (mcus > (uint64_t)len * 8)
        return pt_seterr(why, PT_ERR_FORMAT,
                         "JPEG: header declares %ux%u (%llu blocks) but the file's %zu bytes "
                         "cannot hold one bit per block: data missing (truncated file)",
                         ci->image_width, ci->image_height, (unsigned long long)mcus, len);
    return PT_OK;
}

static int decode_jpeg(pd_img *im, const unsigned char *data, size_t len, int min_w, int min_h,
                       const pd_img_limits *lim, int *warnings, char *why)
{
    struct jpeg_decompress_struct ci;
    jerr je;
    JSAMPROW row;
    memset(&je, 0, sizeof je);
    ci.err = jpeg_std_error(&je.pub);
    je.pub.error_exit = j_error_exit;
    je.pub.emit_message = j_emit;
    je.why = why;
    je.max_scans = lim && lim->max_scans > 0 ? lim->max_scans : PD_MAX_SCANS_DEFAULT;
    je.prog.progress_monitor = j_progress;
    if (setjmp(je.jb)) {
        jpeg_destroy_decompress(&ci);
        return je.rc ? je.rc : PT_ERR_FORMAT;
    }
    jpeg_create_decompress(&ci);
    /* libjpeg-turbo's own limit (jmemnobs.c): refuses allocations beyond it */
    uint64_t mem = PD_DECODE_MEMORY(max_pixels_of(lim));
    ci.mem->max_memory_to_use = mem > (uint64_t)LONG_MAX ? LONG_MAX : (long)mem;
    ci.progress = &je.prog;
    jpeg_mem_src(&ci, (const unsigned char *)data, (unsigned long)len);
    jpeg_read_header(&ci, TRUE);
    int rc = check_declared("JPEG", ci.image_width, ci.image_height, lim, why);
    if (!rc) rc = check_data_size(&ci, len, why);
    if (rc) {
        jpeg_destroy_decompress(&ci);
        return rc;
    }
    int cmyk = ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK;
    if (cmyk) ci.out_color_space = JCS_CMYK;
    else if (ci.num_components == 1) ci.out_color_space = JCS_GRAYSCALE;
    else ci.out_color_space = JCS_RGB;
    /* DCT-domain downscaling while the result stays at least the target size */
    if (min_w > 0 && min_h > 0) {
        unsigned denom = 8;
        while (denom > 1 && ((ci.image_width + denom - 1) / denom < (unsigned)min_w ||
                             (ci.image_height + denom - 1) / denom < (unsigned)min_h))
            denom /= 2;
        ci.scale_num = 1;
        ci.scale_denom = denom;
    }
    ci.dct_method = JDCT_IFAST; /* TensorFlow decode_jpeg's default (INTEGER_FAST) */
    jpeg_start_decompress(&ci);
    int oc = ci.output_components;
    if ((rc = img_reserve(im, (int)ci.output_width, (int)ci.output_height, oc, why))) {
        jpeg_destroy_decompress(&ci);
        return rc;
    }
    size_t stride = (size_t)ci.output_width * (size_t)oc;
    while (ci.output_scanline < ci.output_height) {
        row = im->px + (size_t)ci.output_scanline * stride;
        jpeg_read_scanlines(&ci, &row, 1);
    }
    int inverted = ci.saw_Adobe_marker; /* Adobe CMYK JPEGs store inverted values */
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    if (je.warnings) {
        pt_seterr(why, PT_OK, "decoded despite %d libjpeg warning%s (first: %s)", je.warnings,
                  je.warnings == 1 ? "" : "s", je.first_warning);
        if (warnings) *warnings = je.warnings;
    }
    if (cmyk) { /* CMYK -> RGB in place (4 -> 3 channels) */
        size_t npx = (size_t)im->w * (size_t)im->h;
        for (size_t p = 0; p < npx; p++) {
            unsigned cc = im->px[4 * p], m = im->px[4 * p + 1], y = im->px[4 * p + 2],
                     k = im->px[4 * p + 3];
            if (!inverted) {
                cc = 255 - cc;
                m = 255 - m;
                y = 255 - y;
                k = 255 - k;
            }
            im->px[3 * p] = (unsigned char)((cc * k + 127) / 255);
            im->px[3 * p + 1] = (unsigned char)((m * k + 127) / 255);
            im->px[3 * p + 2] = (unsigned char)((y * k + 127) / 255);
        }
        im->c = 3;
    }
    return PT_OK;
}

/* ---- PNG ---------------------------------------------------------------------- */

typedef struct png_src {
    const unsigned char *p;
    size_t len, off;
    char *why;
} png_src;

static void p_read(png_structp png, png_bytep out, size_t n)
{
    png_src *s = png_get_io_ptr(png);
    if (n > s->len - s->off) png_error(png, "premature end of data (truncated file)");
    memcpy(out, s->p + s->off, n);
    s->off += n;
}

static void p_error(png_structp png, png_const_charp msg)
{
    png_src *s = png_get_error_ptr(png);
    pt_seterr(s->why, PT_ERR_FORMAT, "PNG: %s", msg);
    png_longjmp(png, 1);
}

static void p_warn(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static int decode_png(pd_img *im, const unsigned char *data, size_t len,
                      const pd_img_limits *lim, char *why)
{
    png_src src = {data, len, 0, why};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, p_error, p_warn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_bytep *volatile rows = NULL;
    if (!png || !info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return pt_seterr(why, PT_ERR_NOMEM, "PNG: out of memory");
    }
    int jv;
    if ((jv = setjmp(png_jmpbuf(png)))) {
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return jv == 2 ? PT_ERR_RANGE : PT_ERR_FORMAT;
    }
    png_set_read_fn(png, &src, p_read);
    png_set_user_limits(png, 16384, 16384);
    png_read_info(png, info);
    if (check_declared("PNG", png_get_image_width(png, info), png_get_image_height(png, info),
                       lim, why))
        png_longjmp(png, 2); /* why is set */
    png_set_expand(png); /* palette -> RGB, gray < 8 bit -> 8 bit, tRNS -> alpha */
    png_set_strip_16(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int w = (int)png_get_image_width(png, info), h = (int)png_get_image_height(png, info);
    int c = png_get_channels(png, info);
    if (c < 1 || c > 4 || png_get_bit_depth(png, info) != 8)
        png_error(png, "unsupported pixel layout");
    if (img_reserve(im, w, h, c, why)) png_error(png, "image too large or out of memory");
    rows = malloc((size_t)h * sizeof *rows);
    if (!rows) png_error(png, "out of memory");
    for (int y = 0; y < h; y++) rows[y] = im->px + (size_t)y * (size_t)w * (size_t)c;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    return PT_OK;
}

/* ---- dispatch ------------------------------------------------------------------ */

int pd_decode_image(pd_img *im, const unsigned char *data, size_t len, int min_w, int min_h,
                    const pd_img_limits *lim, int *warnings, char *why)
{
    if (warnings) *warnings = 0;
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (len >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
        return decode_jpeg(im, data, len, min_w, min_h, lim, warnings, why);
    if (len >= 8 && !memcmp(data, png_sig, 8)) return decode_png(im, data, len, lim, why);
    if (len == 0) return pt_seterr(why, PT_ERR_FORMAT, "empty file");
    if (len >= 2 && data[0] == 'B' && data[1] == 'M')
        return pt_seterr(why, PT_ERR_UNSUPPORTED, "BMP images are not supported (JPEG, PNG)");
    if (len >= 4 && !memcmp(data, "GIF8", 4))
        return pt_seterr(why, PT_ERR_UNSUPPORTED, "GIF images are not supported (JPEG, PNG)");
    return pt_seterr(why, PT_ERR_FORMAT, "not a JPEG or PNG image");
}

int pd_read_file(pd_img *im, const char *path, uint64_t max_bytes, char *why)
{
    /* O_NONBLOCK: opening a FIFO must not wait for a writer */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return pt_seterr(why, PT_ERR_IO, "%s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return pt_seterr(why, PT_ERR_IO, "not a regular file");
    }
    if ((uint64_t)st.st_size > max_bytes) {
        close(fd);
        return pt_seterr(why, PT_ERR_RANGE, "file of %lld bytes, more than the %llu an image of "
                         "the allowed size needs", (long long)st.st_size,
                         (unsigned long long)max_bytes);
    }
    size_t len = (size_t)st.st_size;
    if (len + 1 > im->fcap) {
        unsigned char *p = realloc(im->fbuf, len + 1);
        if (!p) {
            close(fd);
            return pt_seterr(why, PT_ERR_NOMEM, "out of memory reading the file");
        }
        im->fbuf = p;
        im->fcap = len + 1;
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, im->fbuf + got, len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != len) return pt_seterr(why, PT_ERR_IO, "read error (%zu of %zu bytes)", got, len);
    im->flen = len;
    return PT_OK;
}

/* 8-bit pixel with sc channels -> float pixel with dc channels in [0,1]. */
static inline void px_convert(const unsigned char *s, int sc, float *d, int dc, const float *lut)
{
    if (sc == dc) {
        for (int k = 0; k < dc; k++) d[k] = lut[s[k]];
        return;
    }
    float r, g, b, a = 1.0f;
    if (sc <= 2) {
        r = g = b = lut[s[0]];
        if (sc == 2) a = lut[s[1]];
    } else {
        r = lut[s[0]];
        g = lut[s[1]];
        b = lut[s[2]];
        if (sc == 4) a = lut[s[3]];
    }
    switch (dc) {
    case 1: d[0] = sc <= 2 ? r : 0.2989f * r + 0.5870f * g + 0.1140f * b; break;
    case 3: d[0] = r; d[1] = g; d[2] = b; break;
    default: d[0] = r; d[1] = g; d[2] = b; d[3] = a; break;
    }
}

/* One source row converted to dc float channels. */
static void row_convert(const pd_img *im, int y, float *dst, int dc, const float *lut)
{
    const unsigned char *src = im->px + (size_t)y * (size_t)im->w * (size_t)im->c;
    for (int x = 0; x < im->w; x++)
        px_convert(src + (size_t)x * (size_t)im->c, im->c, dst + (size_t)x * (size_t)dc, dc, lut);
}

int pd_img_to_float(const pd_img *im, float *dst, int dh, int dw, int dc, float **scratch,
                    size_t *scap)
{
    const float *lut = pd_u8_lut();
    if (im->w == dw && im->h == dh) {
        for (int y = 0; y < dh; y++) row_convert(im, y, dst + (size_t)y * (size_t)dw * dc, dc, lut);
        return PT_OK;
    }
    /* bilinear as pd_resize_bilinear, from two converted source rows at a
     * time (same arithmetic, so the same floats as converting the whole
     * image first, without its full-size float copy) */
    size_t rowf = (size_t)im->w * (size_t)dc;
    if (2 * rowf > *scap) {
        float *p = realloc(*scratch, 2 * rowf * sizeof(float));
        if (!p) return PT_ERR_NOMEM;
        *scratch = p;
        *scap = 2 * rowf;
    }
    float *rows[2] = {*scratch, *scratch + rowf};
    int have[2] = {-1, -1};
    for (int oy = 0; oy < dh; oy++) {
        int lo, hi;
        float ty;
        pd_lerp_weight(oy, dh, im->h, &lo, &hi, &ty);
        int slot_lo = have[0] == lo ? 0 : have[1] == lo ? 1 : -1;
        if (slot_lo < 0) { /* keep the slot that holds hi, if one does */
            slot_lo = have[0] == hi ? 1 : 0;
            row_convert(im, lo, rows[slot_lo], dc, lut);
            have[slot_lo] = lo;
        }
        int slot_hi = have[0] == hi ? 0 : have[1] == hi ? 1 : -1;
        if (slot_hi < 0) {
            slot_hi = 1 - slot_lo;
            row_convert(im, hi, rows[slot_hi], dc, lut);
            have[slot_hi] = hi;
        }
        const float *r[2] = {rows[slot_lo], rows[slot_hi]};
        pd_resize_row(r[0], r[1], ty, im->w, dst + (size_t)oy * (size_t)dw * (size_t)dc, dw, dc);
    }
    return PT_OK;
}

int pd_load_image(const char *path, int h, int w, int c, float *out, char *err)
{
    pd_img im;
    char why[PT_ERRLEN] = "";
    float *scratch = NULL;
    size_t scap = 0;
    int rc;
    if (!path || !out || h <= 0 || w <= 0 || (c != 1 && c != 3 && c != 4))
        return pt_seterr(err, PT_ERR_INVAL, "pd_load_image: invalid arguments");
    memset(&im, 0, sizeof im);
    if ((rc = pd_read_file(&im, path, PD_MAX_FILE_BYTES(PD_MAX_PIXELS_DEFAULT), why)) ||
        (rc = pd_decode_image(&im, im.fbuf, im.flen, w, h, NULL, NULL, why))) {
        pd_img_free(&im);
        return pt_seterr(err, rc, "%s: %s", path, why);
    }
    rc = pd_img_to_float(&im, out, h, w, c, &scratch, &scap);
    free(scratch);
    pd_img_free(&im);
    if (rc) return pt_seterr(err, rc, "%s: out of memory", path);
    return PT_OK;
}
