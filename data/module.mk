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
data_TEST_PREREQS := $(DATA_LIB) $(CORE_LIB)
test_data_LIBS := $(DATA_LIB) $(CORE_LIB)
test_data_LDLIBS := $(DATA_LDLIBS)
$(BUILD)/tests/test_data: $(DATA_LIB) $(CORE_LIB)
