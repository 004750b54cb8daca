# strategies/: Flower's aggregation strategies (pst.h, prefix pst_).
STRAT_SRCS := $(filter-out strategies/bench_agg.c,$(wildcard strategies/*.c))
STRAT_OBJS := $(STRAT_SRCS:%.c=$(BUILD)/%.o)
STRAT_LIB  := $(BUILD)/libpetal-strategies.a
LIBS_ALL   += $(STRAT_LIB)
PETAL_ARCHIVES += $(STRAT_LIB)

# The fold is memory-bound and must vectorise: -O3 for that file only.
$(BUILD)/strategies/fold.o: CFLAGS += -O3

$(STRAT_LIB): $(STRAT_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

strategies_TESTS := $(BUILD)/tests/test_strategies $(BUILD)/tests/test_strat_hostile \
                    tests/test_strat_numpy.py
strategies_TEST_PREREQS := $(STRAT_LIB) $(BUILD)/tests/test_strat_driver
test_strategies_LIBS := $(STRAT_LIB) $(CORE_LIB)
test_strat_hostile_LIBS := $(STRAT_LIB) $(CORE_LIB)
test_strat_driver_LIBS := $(STRAT_LIB) $(CORE_LIB)
$(BUILD)/tests/test_strategies $(BUILD)/tests/test_strat_hostile $(BUILD)/tests/test_strat_driver: \
    $(STRAT_LIB) $(CORE_LIB)

# make bench-agg: FedAvg fold throughput vs a STREAM-like triad and numpy,
# and server RSS while streaming 100 client updates.
BENCH_AGG := $(BUILD)/strategies/bench_agg
$(BENCH_AGG): $(BUILD)/strategies/bench_agg.o $(STRAT_LIB) $(CORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $< $(STRAT_LIB) $(CORE_LIB) -lm
$(BUILD)/strategies/bench_agg.o: CFLAGS += -O3
.PHONY: bench-agg
bench-agg: $(BENCH_AGG)
	$(BENCH_AGG) --numpy strategies/bench_agg_numpy.py --python /usr/bin/python3

# make check-agg-precision: float-delta and double accumulators vs float64 and
# vs Flower's float32 numpy arithmetic on seed-cnn-sized updates (2/10/100 clients).
.PHONY: check-agg-precision
check-agg-precision: $(BENCH_AGG)
	$(BENCH_AGG) --precision
