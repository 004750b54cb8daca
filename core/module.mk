# core/: shared plumbing (errors, logging, timing, params) and the agents
# (server round loop, client loop, the petal command).
CORE_SRCS := $(filter-out core/main.c,$(wildcard core/*.c))
CORE_OBJS := $(CORE_SRCS:%.c=$(BUILD)/%.o)
CORE_LIB  := $(BUILD)/libpetal-core.a
LIBS_ALL  += $(CORE_LIB)

$(CORE_LIB): $(CORE_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

# The petal command links every module; each module.mk appends its archive
# to PETAL_ARCHIVES and its system libs to PETAL_LDLIBS (archives are linked
# as one group, so order does not matter).
PETAL_BIN := $(BUILD)/petal
BINS_ALL  += $(PETAL_BIN)
$(PETAL_BIN): $(BUILD)/core/main.o $(CORE_LIB) $$(PETAL_ARCHIVES)
	$(CC) $(LDFLAGS) -o $@ $(BUILD)/core/main.o -Wl,--start-group $(PETAL_ARCHIVES) $(CORE_LIB) -Wl,--end-group $(PETAL_LDLIBS) -lm

core_TESTS := $(BUILD)/tests/test_core
core_TEST_PREREQS := $(CORE_LIB)
test_core_LIBS := $(CORE_LIB)
$(BUILD)/tests/test_core: $(CORE_LIB)

# results writer, system stats, report, petal run (issue 5)
PETAL_LDLIBS += -lcjson
core_TESTS += $(BUILD)/tests/test_results
test_results_LIBS := $(CORE_LIB)
test_results_LDLIBS := -lcjson
$(BUILD)/tests/test_results: $(CORE_LIB)
core_TEST_PREREQS += $(BUILD)/tests/test_report_fixture $(PETAL_BIN)
test_report_fixture_LIBS := $(CORE_LIB)
test_report_fixture_LDLIBS := -lcjson
$(BUILD)/tests/test_report_fixture: $(CORE_LIB)
core_TESTS += tests/test_report.py
core_TESTS += tests/test_run.py

# agents: petal server / petal client (issue 3) - interop, federation, bad input
core_TESTS += tests/test_agents_flower_client.py tests/test_agents_flower_server.py \
              tests/test_agents_badinput.py tests/test_federation.py tests/test_agents_cli.py
# issue 20: petal client against hand-built hostile servers (ends, limits, SIGTERM, memory)
core_TESTS += tests/test_agents_hostile_server.py
core_TEST_PREREQS += $(PETAL_BIN) $(BUILD)/gen/py/transport_pb2.py \
                     $(BUILD)/gen/py/transport_pb2_grpc.py
core_TESTS += tests/test_run_e2e.py tests/test_data_federation.py tests/test_fifo_options.py \
              tests/test_exit_status.py tests/test_report_growth.py

# reliability (issue 7): checkpoints/resume, client faults, update validation, limits, load
core_TESTS += tests/test_rel_checkpoint.py tests/test_rel_faults.py tests/test_rel_validation.py \
              tests/test_rel_limits.py
# a credentialed but hostile client under the server's defaults (issue 11)
core_TESTS += tests/test_rel_hostile_client.py

# load: many concurrent clients (threads with the pnet client API) against a petal server
core_TESTS += $(BUILD)/tests/test_rel_load
test_rel_load_LIBS = $(NET_LIB) $(CORE_LIB)
test_rel_load_LDLIBS := -lprotobuf-c -lnghttp2 -lssl -lcrypto -lcjson
$(BUILD)/tests/test_rel_load: $$(NET_LIB) $(CORE_LIB)
.PHONY: bench-load
bench-load: $(BUILD)/tests/test_rel_load $(PETAL_BIN)
	BUILD=$(BUILD) $(BUILD)/tests/test_rel_load --clients $(or $(LOAD_CLIENTS),1000) \
	    --rounds $(or $(LOAD_ROUNDS),3) --bench

# valgrind: a 2-round local federation, every process under valgrind --leak-check=full
.PHONY: check-valgrind
check-valgrind: $(PETAL_BIN)
	BUILD=$(BUILD) sh tests/test_rel_valgrind.sh
core_TESTS += $(BUILD)/tests/test_contract
test_contract_LIBS = $(CORE_LIB) $(DATA_LIB) $(CORE_LIB)
test_contract_LDLIBS := -lcjson -lz -ljpeg -lpng
$(BUILD)/tests/test_contract: $(CORE_LIB) $$(DATA_LIB)
core_TESTS += $(BUILD)/tests/test_rel_ckpt
test_rel_ckpt_LIBS = $(CORE_LIB) $(STRAT_LIB) $(CORE_LIB)
$(BUILD)/tests/test_rel_ckpt: $(CORE_LIB) $$(STRAT_LIB)
