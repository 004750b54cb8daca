/*
 * contract_int.h - the federation's data contract (internal to the agents).
 *
 * The label vocabulary and the held-out split belong to the server. A Petal
 * server that evaluates on a dataset tells its clients, in the config of
 * every FitIns and EvaluateIns (Flower clients ignore keys they do not use):
 *
 *   petal.classes  string  JSON array of the class names, label k = entry k
 *   petal.split    string  "kind=folder files=N heldout=M val_split=F seed=S
 *                          list=HEX" (an image folder: Keras' split of N files)
 *                          or "kind=test-set" (a format with its own test set)
 *   petal.heldout  bytes   FitIns only, image folders: a Bloom filter of the
 *                          keys (pd_key) of every held-out file
 *
 * A Petal client then, at the first instruction that carries them:
 *  - maps its classes onto the server's by name (label k on every machine
 *    means the server's class k; a client without some classes trains with
 *    aligned labels) and refuses a class the server does not have;
 *  - checks its training files against the server's held-out filter: none
 *    may be trained on. When its split settings (val_split, seed) are the
 *    server's, its folder differs from the server's (Keras' shuffle then cuts
 *    it differently) and it leaves those files out; when its settings differ,
 *    it refuses, saying what differs.
 * A refused client answers the instruction with a failure status whose
 * message is the reason (the server logs it) and stops.
 */
#ifndef PETAL_CONTRACT_INT_H
#define PETAL_CONTRACT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "pdata.h"
#include "petal.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PT_CONTRACT_CLASSES "petal.classes"
#define PT_CONTRACT_SPLIT "petal.split"
#define PT_CONTRACT_HELDOUT "petal.heldout"
#define PT_CONTRACT_MAX_CLASSES 100000
#define PT_CONTRACT_MAX_FILTER ((size_t)1 << 20) /* bytes of Bloom filter built */

/* What the server sends. */
typedef struct pt_contract {
    char *classes;    /* JSON array (owned) */
    char *split;      /* description (owned) */
    uint8_t *filter;  /* held-out Bloom filter or NULL (owned) */
    size_t filter_len;
    int nclasses;
} pt_contract;

/* Build the contract from the server's held-out dataset (its class names, or
 * "0".."n-1" when the format has none) and what pd_open said about its split.
 * Returns PT_OK, PT_ERR_NOMEM or PT_ERR_RANGE (too many classes). */
int pt_contract_build(pt_contract *c, const pd_dataset *test, const pd_split_info *si,
                      char *err);
/* Put the contract's entries into a FitIns (with_filter) or EvaluateIns
 * config. Returns PT_OK or PT_ERR_NOMEM. */
int pt_contract_put(const pt_contract *c, pt_config *cfg, int with_filter);
/* One line for the server's log. */
void pt_contract_describe(const pt_contract *c, char *buf, size_t len);
void pt_contract_free(pt_contract *c);

/* The client's side: its split settings and what it agreed to so far. */
typedef struct pt_contract_state {
    double val_split;         /* this client's --val-split and --seed */
    uint64_t seed;
    int model_classes;        /* outputs of this client's model */
    int own_folder;           /* this client's data is an image folder ... */
    uint64_t own_list_hash;   /* ... with this file list (pd_split_info.list_hash) */
    int agreed;               /* classes and split accepted (labels remapped) */
    int filter_checked;       /* the held-out filter applied */
    uint64_t terms_hash;      /* hash of the agreed classes + split strings */
    uint64_t filter_hash;
} pt_contract_state;

/* What one call did, for the client's log. */
typedef struct pt_contract_outcome {
    int present;      /* the config carried a contract */
    int first;        /* first agreement: labels were remapped */
    size_t excluded;  /* training examples left out (held out by the server) */
    char note[600];   /* what was agreed, for the log ("" when nothing new) */
} pt_contract_outcome;

/* Check a FitIns/EvaluateIns config against this client's data and, the
 * first time, adopt it: remap train's and val's labels onto the server's
 * classes (class_names and nclasses become the server's) and leave out the
 * training examples the server holds out. Returns PT_OK (agreed, or no
 * contract in cfg) or PT_ERR_MISMATCH / PT_ERR_FORMAT / PT_ERR_NOMEM with err
 * saying what differs: the client must refuse the instruction and stop (its
 * datasets may be partly adopted). */
int pt_contract_apply(pt_contract_state *st, const pt_config *cfg, pd_dataset *train,
                      pd_dataset *val, pt_contract_outcome *out, char *err);

#ifdef __cplusplus
}
#endif
#endif /* PETAL_CONTRACT_INT_H */
