# net/: Flower's wire protocol (protobuf-c messages, NPY, gRPC/HTTP2, TLS).
# Codec rules (proto generation) and transport rules both live here; keep
# each part's lines inside its own section.
NET_SRCS := $(wildcard net/*.c)
NET_OBJS := $(NET_SRCS:%.c=$(BUILD)/%.o)
NET_LIB  := $(BUILD)/libpetal-net.a
LIBS_ALL += $(NET_LIB)
PETAL_ARCHIVES += $(NET_LIB)
PETAL_LDLIBS += -lprotobuf-c -lnghttp2 -lssl -lcrypto

$(NET_LIB): $(NET_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

net_TESTS :=
net_TEST_PREREQS := $(NET_LIB)

# ---- codec section -------------------------------------------------------
# net/proto/transport.proto -> protoc-c C sources in $(BUILD)/gen/net/ (compiled
# into libpetal-net.a) and Python stubs in $(BUILD)/gen/py/ for the tests.
NET_PROTO       := net/proto/transport.proto
NET_PB_C        := $(BUILD)/gen/net/transport.pb-c.c
NET_PB_H        := $(BUILD)/gen/net/transport.pb-c.h
NET_PB_O        := $(BUILD)/gen/net/transport.pb-c.o
NET_PY_STUBS    := $(BUILD)/gen/py/transport_pb2.py $(BUILD)/gen/py/transport_pb2_grpc.py
NET_CODEC_SRCS  := net/npy.c net/msg.c net/scalar.c
NET_CODEC_OBJS  := $(NET_CODEC_SRCS:%.c=$(BUILD)/%.o)

$(NET_PB_C) $(NET_PB_H) &: $(NET_PROTO)
	@mkdir -p $(BUILD)/gen/net
	protoc-c --proto_path=net/proto --c_out=$(BUILD)/gen/net $(NET_PROTO)
$(NET_PB_O): $(NET_PB_C) $(NET_PB_H)
	$(CC) $(CPPFLAGS) -I$(BUILD)/gen/net $(CFLAGS) -MMD -MP -c $< -o $@
$(NET_PY_STUBS) &: $(NET_PROTO)
	@mkdir -p $(BUILD)/gen/py
	/usr/bin/python3 -m grpc_tools.protoc -Inet/proto --python_out=$(BUILD)/gen/py \
	    --grpc_python_out=$(BUILD)/gen/py $(NET_PROTO)

$(NET_LIB): $(NET_PB_O)
$(NET_CODEC_OBJS) $(BUILD)/tests/test_net_codec.o $(BUILD)/tests/test_net_codec_peer.o: $(NET_PB_H)

net_TESTS += $(BUILD)/tests/test_net_codec tests/test_net_codec.py
net_TEST_PREREQS += $(BUILD)/tests/test_net_codec_peer $(NET_PY_STUBS)
test_net_codec_LIBS := $(NET_LIB) $(CORE_LIB)
test_net_codec_LDLIBS := -lprotobuf-c -lnghttp2 -lssl -lcrypto
test_net_codec_peer_LIBS := $(NET_LIB) $(CORE_LIB)
test_net_codec_peer_LDLIBS := -lprotobuf-c -lnghttp2 -lssl -lcrypto
$(BUILD)/tests/test_net_codec $(BUILD)/tests/test_net_codec_peer: $(NET_LIB) $(CORE_LIB)
# map<string, Scalar> caps and decode cost growth (issue 11)
net_TESTS += $(BUILD)/tests/test_net_maps
test_net_maps_LIBS := $(NET_LIB) $(CORE_LIB)
test_net_maps_LDLIBS := -lprotobuf-c -lnghttp2 -lssl -lcrypto
$(BUILD)/tests/test_net_maps: $(NET_LIB) $(CORE_LIB)


# ---- transport section ---------------------------------------------------
NET_T_LDLIBS := -lnghttp2 -lssl -lcrypto -lprotobuf-c
net_TESTS += $(BUILD)/tests/test_net_transport tests/test_net_transport.py
net_TESTS += $(BUILD)/tests/test_net_transport_auth tests/test_net_transport_auth.py
# the auth/limit options of petal server/client, end to end (needs the petal binary)
net_TESTS += tests/test_net_transport_cli.py
net_TEST_PREREQS += $(BUILD)/petal
test_net_transport_auth_LIBS := $(NET_LIB) $(CORE_LIB)
test_net_transport_auth_LDLIBS := $(NET_T_LDLIBS)
$(BUILD)/tests/test_net_transport_auth: $(NET_LIB) $(CORE_LIB)
net_TEST_PREREQS += $(BUILD)/tests/test_net_transport_peer
test_net_transport_LIBS := $(NET_LIB) $(CORE_LIB)
test_net_transport_LDLIBS := $(NET_T_LDLIBS)
test_net_transport_peer_LIBS := $(NET_LIB) $(CORE_LIB)
test_net_transport_peer_LDLIBS := $(NET_T_LDLIBS)
test_net_transport_bench_LIBS := $(NET_LIB) $(CORE_LIB)
test_net_transport_bench_LDLIBS := $(NET_T_LDLIBS)
$(BUILD)/tests/test_net_transport $(BUILD)/tests/test_net_transport_peer \
    $(BUILD)/tests/test_net_transport_bench: $(NET_LIB) $(CORE_LIB)

# hostile peers (issue 11): hand-built HTTP/2 frames against the real petal server
# (Debian's python3-hyperframe, python3-hpack), and decode cost as growth
net_TESTS += tests/test_net_hostile.py $(BUILD)/tests/test_net_cost
test_net_cost_LIBS := $(NET_LIB) $(CORE_LIB)
test_net_cost_LDLIBS := $(NET_T_LDLIBS)
$(BUILD)/tests/test_net_cost: $(NET_LIB) $(CORE_LIB)

# make bench-net: one seed-cnn-sized round (FitIns out, FitRes back) with 10
# clients on loopback; tensor GB/s through the server, server CPU s/round.
.PHONY: bench-net
bench-net: $(BUILD)/tests/test_net_transport_bench
	$(BUILD)/tests/test_net_transport_bench $(BENCH_NET_ARGS)
