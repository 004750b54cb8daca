# nn/: libpetal-nn, the standalone CNN library (depends on libc, OpenBLAS, cJSON only).
#
#   make test-nn          gradient checks, backend agreement, layout, I/O, bad input
#   make bench-nn         throughput table (seed-cnn, fmnist-cnn; 1 and 2 threads)
#   make check-accuracy   fmnist-cnn, 1 epoch, Adam: >= 87% on the 10k test images
#   make install          header, libpetal-nn.a/.so and petal-nn.pc under $(DESTDIR)$(PREFIX)
NN_VERSION := 0.1.0
NN_SRCS := $(wildcard nn/*.c)
NN_OBJS := $(NN_SRCS:%.c=$(BUILD)/%.o)
NN_LIB  := $(BUILD)/libpetal-nn.a
NN_SO   := $(BUILD)/libpetal-nn.so
NN_LDLIBS := -lopenblas -lcjson -lm
# -O3 for the vectorised loops (no -ffast-math: results stay reproducible)
$(NN_OBJS): CFLAGS += -O3 -fno-math-errno -ffp-contract=off
LIBS_ALL += $(NN_LIB) $(NN_SO)
PETAL_ARCHIVES += $(NN_LIB)
PETAL_LDLIBS += -lopenblas -lcjson

$(NN_LIB): $(NN_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

$(NN_SO): $(NN_OBJS) nn/libpetal-nn.map
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libpetal-nn.so.0 -Wl,--version-script=nn/libpetal-nn.map \
	  -o $@ $(NN_OBJS) $(NN_LDLIBS)

# The .pc file is written at install time, with that run's PREFIX.
NN_PC_WRITE = printf '%s\n' 'prefix=$(PREFIX)' 'exec_prefix=$${prefix}' 'libdir=$${prefix}/lib' \
	  'includedir=$${prefix}/include' '' 'Name: petal-nn' \
	  'Description: Petal CNN library: Keras-style models trained on OpenBLAS' \
	  'Version: $(NN_VERSION)' 'Requires.private: openblas libcjson' \
	  'Libs: -L$${libdir} -lpetal-nn' 'Libs.private: -lopenblas -lcjson -lm -lpthread' \
	  'Cflags: -I$${includedir}'

# ---- tests ------------------------------------------------------------------
nn_TESTS := $(BUILD)/tests/test_nn $(BUILD)/tests/test_nn_grad tests/test_nn_install.sh
nn_TEST_PREREQS := $(NN_LIB) $(NN_SO)
test_nn_LIBS := $(NN_LIB)
test_nn_LDLIBS := $(NN_LDLIBS)
test_nn_grad_LIBS := $(NN_LIB)
test_nn_grad_LDLIBS := $(NN_LDLIBS)
$(BUILD)/tests/test_nn $(BUILD)/tests/test_nn_grad: $(NN_LIB)

# ---- install ------------------------------------------------------------------
.PHONY: install-nn
install: install-nn
install-nn: $(NN_LIB) $(NN_SO)
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 nn/pnn.h $(DESTDIR)$(PREFIX)/include/pnn.h
	install -m 644 $(NN_LIB) $(DESTDIR)$(PREFIX)/lib/libpetal-nn.a
	install -m 755 $(NN_SO) $(DESTDIR)$(PREFIX)/lib/libpetal-nn.so.0
	ln -sf libpetal-nn.so.0 $(DESTDIR)$(PREFIX)/lib/libpetal-nn.so
	$(NN_PC_WRITE) > $(DESTDIR)$(PREFIX)/lib/pkgconfig/petal-nn.pc

# ---- benchmark ----------------------------------------------------------------
NN_BENCH := $(BUILD)/nn/bench/bench_nn
$(NN_BENCH): $(BUILD)/nn/bench/bench_nn.o $(NN_LIB)
	$(CC) $(LDFLAGS) -o $@ $< $(NN_LIB) $(NN_LDLIBS)

.PHONY: bench-nn
# PyTorch (Debian's python3-torch, large) is the same-run baseline; installed here on demand, not by
# scripts/deps (make test doesn't need it). Without it the table keeps the anchors.md comparison.
bench-nn: $(NN_BENCH)
	@dpkg -s python3-torch >/dev/null 2>&1 || { if [ "$$(id -u)" -eq 0 ]; then \
	  echo "bench-nn: installing python3-torch (same-run baseline)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch \
	    >/dev/null; } || echo "bench-nn: could not install python3-torch"; \
	  else echo "bench-nn: for the same-run PyTorch baseline run:" \
	    "sudo apt-get install -y python3-torch"; fi; }
	$(NN_BENCH) --torch nn/bench/torch_baseline.py $(BENCH_ARGS)
	@best=$$($(NN_BENCH) --best-core); \
	if [ -n "$$OPENBLAS_CORETYPE" ] && [ -n "$$best" ] && [ "$$OPENBLAS_CORETYPE" != "$$best" ]; then \
	  echo; echo "bench-nn: again with the CPU's best OpenBLAS kernels ($$best; the environment" \
	    "sets OPENBLAS_CORETYPE=$$OPENBLAS_CORETYPE)"; \
	  OPENBLAS_CORETYPE=$$best $(NN_BENCH) --torch nn/bench/torch_baseline.py $(BENCH_ARGS); fi

# ---- accuracy check (uses data/'s IDX reader; nn itself does not depend on it) ----
NN_CHECKACC := $(BUILD)/nn/bench/check_accuracy
$(NN_CHECKACC): $(BUILD)/nn/bench/check_accuracy.o $(NN_LIB) $$(DATA_LIB) $$(CORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $< $(NN_LIB) $(DATA_LIB) $(CORE_LIB) $(NN_LDLIBS) $(DATA_LDLIBS)

.PHONY: check-accuracy-nn
check-accuracy: check-accuracy-nn
check-accuracy-nn: $(NN_CHECKACC)
	$(NN_CHECKACC)
