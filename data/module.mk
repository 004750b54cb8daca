# data/: datasets (IDX, CIFAR-10 binary, image folders via libjpeg/libpng)
# and partitioners. Depends on core/ (errors, logging).
DATA_SRCS := $(wildcard data/*.c)
DATA_OBJS := $(DATA_SRCS:%.c=$(BUILD)/%.o)
DATA_LIB  := $(BUILD)/libpetal-data.a
DATA_LDLIBS := -lz -ljpeg -lpng
LIBS_ALL  += $(DATA_LIB)
PETAL_ARCHIVES += $(DATA_LIB)
PETAL_LDLIBS += $(DATA_LDLIBS)

$(DATA_LIB): $(DATA_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

data_TESTS := $(BUILD)/tests/test_data
data_TEST_PREREQS := $(DATA_LIB) $(CORE_LIB) $(BUILD)/pdata-info
test_data_LIBS := $(DATA_LIB) $(CORE_LIB)
test_data_LDLIBS := $(DATA_LDLIBS)
$(BUILD)/tests/test_data: $(DATA_LIB) $(CORE_LIB)

# pdata-info: load a dataset spec, print shape, class counts and load time.
PDATA_INFO := $(BUILD)/pdata-info
BINS_ALL   += $(PDATA_INFO)
$(PDATA_INFO): $(BUILD)/data/tools/pdata_info.o $(DATA_LIB) $(CORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $< $(DATA_LIB) $(CORE_LIB) $(DATA_LDLIBS) -lm

# make bench-data: time decoding the houseware folder (not a test).
HOUSEWARE ?= ../shared/data/images_houseware
.PHONY: bench-data
bench-data: $(PDATA_INFO)
	$(PDATA_INFO) -t 1 $(HOUSEWARE)
	$(PDATA_INFO) -t 2 $(HOUSEWARE)
	$(PDATA_INFO) -t 2 -s 64,64,3 $(HOUSEWARE)
