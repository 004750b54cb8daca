/* image_int.h - image decoding internals (data/image.c). */
#ifndef PETAL_DATA_IMAGE_INT_H
#define PETAL_DATA_IMAGE_INT_H

#include "data_int.h"

/* A reusable decode workspace: the file bytes and the decoded pixels. */
typedef struct pd_img {
    unsigned char *px; /* h*w*c bytes, HWC, c = 1 (gray), 2 (gray+alpha), 3 (RGB), 4 (RGBA) */
    size_t cap;
    int w, h, c;
    unsigned char *fbuf; /* file contents */
    size_t flen, fcap;
} pd_img;

void pd_img_free(pd_img *im);

/* Decoder caps (pd_open_opts' max_pixels / max_scans; 0 = the defaults). */
typedef struct pd_img_limits {
    uint64_t max_pixels; /* declared width x height, checked before any decoder allocation */
    int max_scans;       /* progressive JPEG scans */
} pd_img_limits;

/* Largest image file read: 8 bytes per allowed pixel (16-bit RGBA stored
 * uncompressed) plus 1 MiB of headers. */
#define PD_MAX_FILE_BYTES(max_pixels) ((uint64_t)(max_pixels) * 8 + ((uint64_t)1 << 20))

/* Read a whole regular file into im->fbuf / im->flen (opened non-blocking:
 * a FIFO or device is refused, never waited on; at most max_bytes). why gets
 * the reason. */
int pd_read_file(pd_img *im, const char *path, uint64_t max_bytes, char *why);

/* Decode a JPEG or PNG (by content) into im. When min_w/min_h > 0, JPEGs may
 * be DCT-downscaled by 2, 4 or 8 while staying at least min_w x min_h.
 * lim may be NULL (defaults). A JPEG whose data ends early, that breaks a
 * cap or libjpeg's memory limit, or that draws more than PD_JPEG_MAX_WARNINGS
 * libjpeg warnings is refused; one decoded despite some warnings returns
 * PT_OK with *warnings > 0 and why naming the first (warnings may be NULL).
 * Returns PT_OK, PT_ERR_FORMAT / PT_ERR_UNSUPPORTED / PT_ERR_RANGE (why says
 * what) or PT_ERR_NOMEM. */
int pd_decode_image(pd_img *im, const unsigned char *data, size_t len, int min_w, int min_h,
                    const pd_img_limits *lim, int *warnings, char *why);
#define PD_JPEG_MAX_WARNINGS 20

/* Convert im to dh x dw x dc floats in [0,1] at dst, resizing bilinearly
 * straight from the 8-bit pixels (two converted source rows at a time, never
 * a float copy of the whole image); *scratch (capacity *scap floats) is a
 * reusable buffer. */
int pd_img_to_float(const pd_img *im, float *dst, int dh, int dw, int dc, float **scratch,
                    size_t *scap);

#endif /* PETAL_DATA_IMAGE_INT_H */
