/*
 * srv_int.h - what the gRPC server (grpc_server.c) indexes by: a hash map
 * from 64-bit keys to values (client ids to streams, peer addresses to
 * connection counts), O(1) per operation, and the per-address key of a peer.
 * Not a public header.
 */
#ifndef PETAL_NET_SRV_INT_H
#define PETAL_NET_SRV_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Open addressing with linear probing and backward-shift deletion; the
 * table doubles at half full. A zeroed u64map is empty. */
typedef struct u64map {
    uint64_t *keys;
    uintptr_t *vals;
    uint8_t *used;
    size_t cap, n;    /* cap: power of two (0 = nothing allocated) */
    uint64_t seed;    /* hash seed, chosen at the first insert */
} u64map;

/* Set key to val (insert or replace). PT_OK or PT_ERR_NOMEM. */
int u64map_put(u64map *m, uint64_t key, uintptr_t val);
/* The value of key, or 0 when absent (*found, if not NULL, says which). */
uintptr_t u64map_get(const u64map *m, uint64_t key, int *found);
/* Remove key (no-op when absent). */
void u64map_del(u64map *m, uint64_t key);
void u64map_free(u64map *m);

/* The address a per-address connection cap counts a peer under: IPv4
 * addresses whole (IPv4-mapped IPv6 too), IPv6 by their /64 prefix (one
 * subscriber's allocation). *v6 says which map; -1 for other families. */
int srv_addr_key(const struct sockaddr *sa, uint64_t *key, int *v6);

#endif /* PETAL_NET_SRV_INT_H */
