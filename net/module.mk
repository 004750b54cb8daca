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

# ---- transport section ---------------------------------------------------
