# launcher/: AWS (EC2, S3, SSM over libcurl + SigV4) and 'petal launch'.
LAUNCHER_SRCS := $(wildcard launcher/*.c)
LAUNCHER_OBJS := $(LAUNCHER_SRCS:%.c=$(BUILD)/%.o)
LAUNCHER_LIB  := $(BUILD)/libpetal-launcher.a
LIBS_ALL      += $(LAUNCHER_LIB)
PETAL_ARCHIVES += $(LAUNCHER_LIB)
PETAL_LDLIBS  += -lcurl -lexpat -lcjson -lssl -lcrypto

$(LAUNCHER_LIB): $(LAUNCHER_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

launcher_TESTS :=
launcher_TEST_PREREQS := $(LAUNCHER_LIB)
