# tests/fuzz/fuzz.mk - libFuzzer targets for Petal's input parsers (issue 7).
# Included at the end of the top-level Makefile (after every module.mk, so
# the module archives' variables are known).
#
#   make fuzz                    build every target with clang
#                                -fsanitize=fuzzer,address,undefined (in
#                                build-fuzz/) and run each for FUZZ_SECONDS
#                                (default 60) on a scratch copy of its seed
#                                corpus; prints execs and coverage per target
#   make fuzz FUZZ="npy idx" FUZZ_SECONDS=300
#   make test-fuzz               the replay test only (also part of make test)
#
# Each target tests/fuzz/fuzz_<name>.c defines LLVMFuzzerTestOneInput and is
# linked two ways:
#   $(BUILD)/fuzz/replay_<name>  normal CC/CFLAGS + tests/fuzz/replay.c, a plain
#                                main() feeding tests/fuzz/corpus/<name>/ and
#                                tests/fuzz/regress/<name>/ (the replay test);
#   build-fuzz/fuzz/fuzz_<name>  clang + libFuzzer (make fuzz).
# Seeds are made by tests/fuzz/gen_corpus.py (committed output); min-* files
# are fuzzer finds kept by tests/fuzz/minimize.sh after a `make fuzz`.
# Crash/hang inputs: tests/fuzz/regress/<name>/ once fixed (replayed by make
# test), tests/fuzz/pending/<name>/ until then (see its README).
# The gRPC server targets (h2_server, h2_frames, tls_server) feed a real
# pnet_server in memory: one end of a socketpair is handed to it with
# pnet_server_adopt (tests/fuzz/fuzz_h2.h). The client target (h2_client)
# plays the server: frame sequences written to a real pnet_client over
# loopback (seeds: tests/fuzz/gen_corpus_h2_client.py).

FUZZ_TARGETS := npy params client_msg server_msg h2_server h2_frames tls_server h2_client \
                model_json weights idx image aws_xml aws_error aws_creds aws_reply strategy_opts \
                results checkpoint
FUZZ ?= $(FUZZ_TARGETS)
FUZZ_SECONDS ?= 60
FUZZ_BUILD := build-fuzz
FUZZ_SAN := fuzzer-no-link,address,undefined

FUZZ_NET_LDLIBS := -lprotobuf-c -lnghttp2 -lssl -lcrypto
FUZZ_NN_LDLIBS := -lopenblas -lcjson
FUZZ_DATA_LDLIBS := -lz -ljpeg -lpng
FUZZ_AWS_LDLIBS := -lcurl -lexpat -lcjson -lssl -lcrypto

fuzz_npy_LIBS := $(NET_LIB) $(CORE_LIB)
fuzz_npy_LDLIBS := $(FUZZ_NET_LDLIBS)
fuzz_params_LIBS := $(NET_LIB) $(CORE_LIB)
fuzz_params_LDLIBS := $(FUZZ_NET_LDLIBS)
fuzz_client_msg_LIBS := $(NET_LIB) $(CORE_LIB)
fuzz_client_msg_LDLIBS := $(FUZZ_NET_LDLIBS)
fuzz_server_msg_LIBS := $(NET_LIB) $(CORE_LIB)
fuzz_server_msg_LDLIBS := $(FUZZ_NET_LDLIBS)
fuzz_h2_server_LIBS := $(NET_LIB) $(CORE_LIB)
fuzz_h2_server_LDLIBS := $(FUZZ_NET_LDLIBS)
fuzz_h2_client_LIBS := $(NET_LIB) $(CORE_LIB)
fuzz_h2_client_LDLIBS := $(FUZZ_NET_LDLIBS)
fuzz_h2_frames_LIBS := $(NET_LIB) $(CORE_LIB)
fuzz_h2_frames_LDLIBS := $(FUZZ_NET_LDLIBS)
fuzz_tls_server_LIBS := $(NET_LIB) $(CORE_LIB)
fuzz_tls_server_LDLIBS := $(FUZZ_NET_LDLIBS)
fuzz_model_json_LIBS := $(NN_LIB) $(CORE_LIB)
fuzz_model_json_LDLIBS := $(FUZZ_NN_LDLIBS)
fuzz_weights_LIBS := $(NN_LIB) $(CORE_LIB)
fuzz_weights_LDLIBS := $(FUZZ_NN_LDLIBS) -lz
fuzz_idx_LIBS := $(DATA_LIB) $(CORE_LIB)
fuzz_idx_LDLIBS := $(FUZZ_DATA_LDLIBS)
fuzz_image_LIBS := $(DATA_LIB) $(CORE_LIB)
fuzz_image_LDLIBS := $(FUZZ_DATA_LDLIBS)
fuzz_aws_xml_LIBS := $(LAUNCHER_LIB) $(CORE_LIB)
fuzz_aws_xml_LDLIBS := $(FUZZ_AWS_LDLIBS)
fuzz_aws_error_LIBS := $(LAUNCHER_LIB) $(CORE_LIB)
fuzz_aws_error_LDLIBS := $(FUZZ_AWS_LDLIBS)
fuzz_aws_creds_LIBS := $(LAUNCHER_LIB) $(CORE_LIB)
fuzz_aws_creds_LDLIBS := $(FUZZ_AWS_LDLIBS)
fuzz_aws_reply_LIBS := $(LAUNCHER_LIB) $(CORE_LIB)
fuzz_aws_reply_LDLIBS := $(FUZZ_AWS_LDLIBS)
fuzz_strategy_opts_LIBS := $(STRAT_LIB) $(CORE_LIB)
fuzz_strategy_opts_LDLIBS :=
fuzz_results_LIBS := $(CORE_LIB)
fuzz_results_LDLIBS := -lcjson
fuzz_checkpoint_LIBS := $(CORE_LIB) $(STRAT_LIB)
fuzz_checkpoint_LDLIBS :=

# ---- replay binaries and the replay test (make test) ----------------------
FUZZ_REPLAYS := $(FUZZ_TARGETS:%=$(BUILD)/fuzz/replay_%)

$(BUILD)/fuzz/obj/%.o: tests/fuzz/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests/fuzz $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/fuzz/replay_%: $(BUILD)/fuzz/obj/fuzz_%.o $(BUILD)/fuzz/obj/replay.o $$(fuzz_$$*_LIBS)
	$(CC) $(LDFLAGS) -o $@ $(BUILD)/fuzz/obj/fuzz_$*.o $(BUILD)/fuzz/obj/replay.o \
	    -Wl,--start-group $(fuzz_$*_LIBS) -Wl,--end-group $(fuzz_$*_LDLIBS) -lm

fuzz_TESTS := tests/test_fuzz_replay.sh
fuzz_TEST_PREREQS := $(FUZZ_REPLAYS)
TESTS += $(fuzz_TESTS)
TEST_PREREQS += $(fuzz_TEST_PREREQS)

# ---- libFuzzer binaries (make fuzz) ----------------------------------------
# The fuzz build is a separate tree: every library compiled by clang with
# coverage instrumentation (-fsanitize=fuzzer-no-link) plus ASan and UBSan.
.PHONY: fuzz fuzz-build
ifeq ($(BUILD),$(FUZZ_BUILD))
$(BUILD)/fuzz/fuzz_%: $(BUILD)/fuzz/obj/fuzz_%.o $$(fuzz_$$*_LIBS)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $< \
	    -Wl,--start-group $(fuzz_$*_LIBS) -Wl,--end-group $(fuzz_$*_LDLIBS) -lm

fuzz-build: $(FUZZ:%=$(BUILD)/fuzz/fuzz_%)

fuzz: fuzz-build
	@sh tests/fuzz/run_fuzz.sh $(BUILD) $(FUZZ_SECONDS) $(FUZZ)
else
fuzz fuzz-build: deps
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=clang SANITIZE=$(FUZZ_SAN) \
	    FUZZ="$(FUZZ)" FUZZ_SECONDS=$(FUZZ_SECONDS) $@
endif

.PHONY: clean-fuzz
clean: clean-fuzz
clean-fuzz:
	rm -rf $(FUZZ_BUILD)
