# SPDX-License-Identifier: MIT
# Ballast build.  `make` builds ballastd and ballast; `make check` runs every
# test; `make check SAN=1` does the same with ASan+UBSan in build-san/.

SAN ?= 0
ifeq ($(SAN),1)
BUILD := build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT := -O1 -g
else
BUILD := build
SANFLAGS :=
OPT := -O2 -g
endif

CC ?= cc
PKGS := liburing rocksdb openssl jansson libzstd libcurl
WARN := -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wvla -Wformat=2 \
	-Wmissing-prototypes -Wstrict-prototypes -Wimplicit-fallthrough
CFLAGS := $(OPT) $(WARN) -D_FORTIFY_SOURCE=2 -fstack-protector-strong \
	-D_GNU_SOURCE -I. $(SANFLAGS) $(EXTRA_CFLAGS) \
	$(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread
LDFLAGS := $(SANFLAGS)

COMMON_SRC := $(wildcard common/*.c)
CRYPTO_SRC := $(wildcard crypto/*.c)
VOLUME_SRC := $(wildcard volume/*.c)
SNAPSHOT_SRC := $(wildcard snapshot/*.c)
TARGET_SRC := $(filter-out target/main.c,$(wildcard target/*.c))
LIB_SRC := $(COMMON_SRC) $(CRYPTO_SRC) $(VOLUME_SRC) $(SNAPSHOT_SRC) $(TARGET_SRC)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
TOOL_SRC := tools/ballast.c tools/cli_rpc.c
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

all: ballastd ballast

ballastd: $(BUILD)/ballastd
	ln -sf $(BUILD)/ballastd ballastd
ballast: $(BUILD)/ballast
	ln -sf $(BUILD)/ballast ballast

$(BUILD)/ballastd: $(BUILD)/target/main.o $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/ballast: $(BUILD)/tools/ballast.o $(BUILD)/tools/cli_rpc.o $(BUILD)/common/util.o
	$(CC) $(LDFLAGS) -o $@ $^ $(shell pkg-config --libs jansson)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

units: $(UNIT_BIN)

deps:
	@tools/deps.sh

run: deps all
	@tools/run.sh

check: deps all units layering
	@SAN=$(SAN) BUILD=$(BUILD) tests/run.sh $(TESTS)

bench: deps all
	@tools/bench.sh

# Include layering: common <- crypto <- volume <- snapshot <- target.
layering:
	@tools/check-layering.sh

# Static checks: the include layering and cppcheck's warning class.
lint: layering
	@cppcheck --quiet --enable=warning,portability --error-exitcode=1 --inline-suppr \
		--suppress=unknownMacro -I. -D_GNU_SOURCE common crypto volume snapshot target tools

compdb:
	bear -- $(MAKE) -B all units

clean:
	rm -rf build build-san ballastd ballast

.PHONY: all deps run check bench lint layering compdb clean units ballastd ballast

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
