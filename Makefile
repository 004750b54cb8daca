# Petal top-level Makefile.
#
#   make                      build every library and the petal binary
#   make test                 install deps if missing, build, run every test
#   make SANITIZE=address,undefined test   (undefined includes float-cast-overflow)
#   make CC=clang             clang must compile it too
#   make install PREFIX=/usr/local DESTDIR=
#
#   make test-<module>        build and run one module's tests (core nn data net
#                             strategies launcher), e.g. make test-nn
#
# Each module contributes a fragment, <module>/module.mk, which:
#   - appends its archive to LIBS_ALL and binaries to BINS_ALL;
#   - sets <module>_TESTS (C test binaries under $(BUILD)/tests/ and/or test
#     scripts, executable, printing PASS:/FAIL: lines) and
#     <module>_TEST_PREREQS (what must be built before its tests run);
#   - sets test_<name>_LIBS / test_<name>_LDLIBS for each C test binary;
#   - appends its system libraries to PETAL_LDLIBS (for the petal binary).
# Objects go under $(BUILD)/<module>/. The petal binary links every module
# archive (PETAL_ARCHIVES, highest layer first).

CC       ?= cc
PREFIX   ?= /usr/local
DESTDIR  ?=
SANITIZE ?=
PKG_CONFIG ?= pkg-config

ifeq ($(SANITIZE),)
BUILD ?= build
else
BUILD ?= build-san
endif

WARN     := -Wall -Wextra -Wstrict-prototypes -Wshadow -Wpointer-arith -Werror
OPT      ?= -O2 -g
CPPFLAGS += -D_GNU_SOURCE -I. -Icore -Inn -Inet -Istrategies -Idata -Ilauncher -I$(BUILD)/gen
CFLAGS   += -std=c11 $(WARN) $(OPT) -fPIC -pthread
LDFLAGS  += -pthread
ifneq ($(SANITIZE),)
# gcc's "undefined" leaves out float-cast-overflow ((int) of a NaN or of 1e300):
# asking for undefined brings it along (clang's group has it already)
comma := ,
SANITIZE_ALL := $(SANITIZE)$(if $(filter undefined,$(subst $(comma), ,$(SANITIZE))),$(if \
                $(filter float-cast-overflow,$(subst $(comma), ,$(SANITIZE))),,$(comma)float-cast-overflow))
CFLAGS   += -fsanitize=$(SANITIZE_ALL) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS  += -fsanitize=$(SANITIZE_ALL)
endif

LIBS_ALL     :=
BINS_ALL     :=
PETAL_LDLIBS :=

.SECONDEXPANSION:
.PHONY: all test deps clean install check-accuracy
all:

MODULES := core nn data net strategies launcher
include $(wildcard $(addsuffix /module.mk,$(MODULES)))

TESTS := $(foreach m,$(MODULES),$($(m)_TESTS))
TEST_PREREQS := $(foreach m,$(MODULES),$($(m)_TEST_PREREQS))

all: $(LIBS_ALL) $(BINS_ALL)
.SECONDARY:

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

# Test binaries: tests/test_<name>.c -> $(BUILD)/tests/test_<name>; each
# module.mk sets <name>_LIBS (archives) and <name>_LDLIBS (system libs).
$(BUILD)/tests/%: $(BUILD)/tests/%.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $($*_LIBS) $($*_LDLIBS) -lm

deps:
	@sh scripts/deps.sh

# `make test` installs what is missing, builds everything, runs every test.
# T=pattern runs only the tests whose name contains pattern.
test: deps
	@$(MAKE) --no-print-directory all $(TEST_PREREQS) $(filter $(BUILD)/%,$(TESTS))
	@BUILD=$(BUILD) sh tests/run.sh $(if $(T),-k $(T)) $(TESTS)

test-%: deps
	@$(MAKE) --no-print-directory $($*_TEST_PREREQS) $(filter $(BUILD)/%,$($*_TESTS))
	@BUILD=$(BUILD) sh tests/run.sh $(if $(T),-k $(T)) $($*_TESTS)

clean:
	rm -rf build build-san

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# `make run`: install what is missing, build, run the default local evaluation.
RUN_ARGS ?=
.PHONY: run
run: deps
	@$(MAKE) --no-print-directory all
	$(PETAL_BIN) run --out results $(RUN_ARGS)

-include tests/fuzz/fuzz.mk
