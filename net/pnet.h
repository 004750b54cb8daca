/*
 * pnet.h - Petal's Flower wire protocol: protobuf messages (protobuf-c), NPY
 * tensors, config maps, gRPC over HTTP/2 (nghttp2) with optional TLS
 * (OpenSSL). Prefix: pnet_. Knows nothing of models: tensors are pt_params
 * (core/petal.h) and messages are bytes.
 *
 * Errors: functions return PT_OK (0) or a negative pt_err code from
 * core/petal.h, and fill an optional caller buffer char err[PT_ERRLEN].
 */
#ifndef PETAL_NET_H
#define PETAL_NET_H

#include <stddef.h>
#include <stdint.h>

#include "petal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================
 * Part 1: codec - NPY tensors, Scalar maps, Flower messages.
 * (owned by the codec work; see net/npy.c, net/msg.c)
 * ====================================================================== */

/* ======================================================================
 * Part 2: transport - gRPC over HTTP/2, h2c and TLS, server and client.
 * (owned by the transport work; see net/h2*.c, net/grpc*.c)
 * ====================================================================== */

#ifdef __cplusplus
}
#endif
#endif /* PETAL_NET_H */
