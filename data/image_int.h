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

/* Read a whole file into im->fbuf / im->flen. why gets the reason. */
int pd_read_file(pd_img *im, const char *path, char *why);

/* Decode a JPEG or PNG (by content) into im. When min_w/min_h > 0, JPEGs may
 * be DCT-downscaled by 2, 4 or 8 while staying at least min_w x min_h.
 * Returns PT_OK, PT_ERR_FORMAT / PT_ERR_UNSUPPORTED (why says what) or
 * PT_ERR_NOMEM. */
int pd_decode_image(pd_img *im, const unsigned char *data, size_t len, int min_w, int min_h,
                    char *why);

/* Convert im to dh x dw x dc floats in [0,1] at dst, resizing bilinearly;
 * *scratch (capacity *scap floats) is a reusable buffer. */
int pd_img_to_float(const pd_img *im, float *dst, int dh, int dw, int dc, float **scratch,
                    size_t *scap);

#endif /* PETAL_DATA_IMAGE_INT_H */
