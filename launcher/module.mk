# launcher/: AWS (EC2, S3, SSM over libcurl + SigV4) and 'petal launch'.
LAUNCHER_SRCS := $(wildcard launcher/*.c)
LAUNCHER_OBJS := $(LAUNCHER_SRCS:%.c=$(BUILD)/%.o)
LAUNCHER_LIB  := $(BUILD)/libpetal-launcher.a
LIBS_ALL      += $(LAUNCHER_LIB)
PETAL_ARCHIVES += $(LAUNCHER_LIB)
LAUNCHER_LDLIBS := -lcurl -lexpat -lcjson -lssl -lcrypto -lz
PETAL_LDLIBS  += $(LAUNCHER_LDLIBS)

# The instances' bootstrap script, compiled into userdata.o as a C string.
LAUNCHER_AGENT_SH := $(BUILD)/gen/launcher/agent_sh.h
$(LAUNCHER_AGENT_SH): launcher/agent.sh
	@mkdir -p $(dir $@)
	sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/?/\\?/g' -e 's/^/"/' -e 's/$$/\\n"/' $< >$@.tmp
	@mv $@.tmp $@
$(BUILD)/launcher/userdata.o: $(LAUNCHER_AGENT_SH)

$(LAUNCHER_LIB): $(LAUNCHER_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

launcher_TESTS := $(BUILD)/tests/test_sigv4 tests/test_sigv4_botocore.py
launcher_TEST_PREREQS := $(LAUNCHER_LIB) $(BUILD)/tests/test_sigv4
test_sigv4_LIBS := $(LAUNCHER_LIB) $(CORE_LIB)
test_sigv4_LDLIBS := $(LAUNCHER_LDLIBS)
$(BUILD)/tests/test_sigv4: $(LAUNCHER_LIB) $(CORE_LIB)

launcher_TESTS += tests/test_aws.py
launcher_TEST_PREREQS += $(BUILD)/tests/test_aws
test_aws_LIBS := $(LAUNCHER_LIB) $(CORE_LIB)
test_aws_LDLIBS := $(LAUNCHER_LDLIBS)
$(BUILD)/tests/test_aws: $(LAUNCHER_LIB) $(CORE_LIB)

# make dist: the source tarball the instances build from: the files git
# tracks (outside git: the source folders), never a credential-like file
# (scripts/dist.sh).
DIST_TARBALL := $(BUILD)/petal-src.tar.gz
.PHONY: dist
dist:
	@mkdir -p $(BUILD)
	@sh scripts/dist.sh $(DIST_TARBALL)

launcher_TESTS += $(BUILD)/tests/test_launch
launcher_TEST_PREREQS += $(BUILD)/tests/test_launch
test_launch_LIBS := $(LAUNCHER_LIB) $(CORE_LIB)
test_launch_LDLIBS := $(LAUNCHER_LDLIBS)
$(BUILD)/tests/test_launch: $(LAUNCHER_LIB) $(CORE_LIB)
launcher_TESTS += tests/test_launch_dryrun.py tests/test_deps_profiles.sh
launcher_TEST_PREREQS += $(PETAL_BIN)
launcher_TESTS += tests/test_launch_rehearsal.py
