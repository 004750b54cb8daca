/*
 * checkpoint_int.h - the server's per-round checkpoint (internal to core/):
 * everything that decides later rounds, so `petal server --resume DIR`
 * continues exactly where an interrupted run stopped.
 *
 * File DIR/checkpoint.ptck, little-endian:
 *   "PTCK" | u32 version (1) | u64 payload length | payload | u32 CRC-32 of payload
 * The payload holds the completed round, the seed and sampling RNG state, the
 * centralised loss of the current global (QFedAvg), the model's tensor shapes
 * and float32 values, the loss/accuracy histories, the metric histories and
 * the strategy's own state (pst_state_save: momentum, optimizer moments, DP
 * noise RNG). Written atomically: a new temporary file in DIR (random name,
 * O_EXCL | O_NOFOLLOW: never a file or link planted there), fsync, rename
 * over the previous checkpoint, fsync DIR; a crash leaves the old or the new
 * one, and the next save removes temporaries of processes that are gone.
 * Writer and reader accept the same: history keys up to PT_CONFIG_KEY_MAX.
 */
#ifndef PETAL_CHECKPOINT_INT_H
#define PETAL_CHECKPOINT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "petal.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PT_CKPT_FILE "checkpoint.ptck"
#define PT_CKPT_VERSION 1u

typedef struct pt_ckpt_hist {
    int round;
    double loss, acc;
} pt_ckpt_hist;

typedef struct pst_strategy pst_strategy;

/* What a checkpoint holds. For pt_ckpt_save every pointer is borrowed; after
 * pt_ckpt_load the struct owns its arrays (pt_ckpt_free), except `st`. */
typedef struct pt_ckpt {
    int round;              /* last completed round (>= 0) */
    int rounds;             /* --rounds of the run that wrote it (information) */
    uint64_t seed;
    uint64_t rng;           /* the server's client-sampling RNG state */
    double central_loss;    /* centralised loss of `global` (NaN if none) */
    double elapsed;         /* seconds the run had taken (information) */
    char model[256];        /* --model as given (information) */
    char strategy[128];     /* pst_name */
    pt_params global;       /* the global model */
    pt_ckpt_hist *h_cent, *h_dist;
    size_t n_cent, n_dist;
    pt_config fit_hist, eval_hist; /* metric histories ("key" -> "(r, v), ..." strings) */
    uint8_t *strategy_state; /* pst_state_save bytes (load: owned) */
    size_t strategy_state_len;
} pt_ckpt;

/* Write c (and the strategy's state, saved from st) into dir/PT_CKPT_FILE
 * atomically. Creates dir if missing. Returns PT_OK, PT_ERR_IO (err names
 * the file and the system error), PT_ERR_RANGE (a history key over
 * PT_CONFIG_KEY_MAX: nothing written), PT_ERR_STATE (strategy round open)
 * or PT_ERR_NOMEM. */
int pt_ckpt_save(const char *dir, const pt_ckpt *c, const pst_strategy *st, char *err);

/* Read and validate dir/PT_CKPT_FILE (or `dir` itself if it is a file):
 * magic, version, length, CRC, every size bounded by the file. `like`
 * (may be NULL) is the server's model: the tensor count and shapes must
 * match it. On success *c owns what it read (pt_ckpt_free). Returns PT_OK,
 * PT_ERR_NOTFOUND (no checkpoint), PT_ERR_FORMAT (not a checkpoint,
 * truncated, CRC mismatch, bad field), PT_ERR_UNSUPPORTED (other version),
 * PT_ERR_MISMATCH (model shapes differ), PT_ERR_IO, PT_ERR_NOMEM; err says
 * which and where. */
int pt_ckpt_load(const char *dir, const pt_params *like, pt_ckpt *c, char *err);

/* Restore the strategy state held by a loaded checkpoint into st. Returns
 * pst_state_load's codes with err naming the checkpoint. */
int pt_ckpt_restore_strategy(const pt_ckpt *c, pst_strategy *st, char *err);

/* Free what pt_ckpt_load allocated; zeroes c. */
void pt_ckpt_free(pt_ckpt *c);

/* CRC-32 (IEEE, as zlib's crc32) of buf, continuing from crc (start with 0). */
uint32_t pt_crc32(uint32_t crc, const void *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* PETAL_CHECKPOINT_INT_H */
