# sockflow — GNU make, nothing else needed to build.
#   make            library (static + shared) and the sockflow command
#   make test       unit + end-to-end suites (installs missing Debian test packages as root)
#   make test SAN=1 the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make TSAN=1     a ThreadSanitizer build in build/tsan (for -j N, several loops)
#   make demo       build and run the narrated demo
#   make install PREFIX=/usr/local DESTDIR=

VERSION  := 0.1.0
PREFIX   ?= /usr/local
DESTDIR  ?=
CC       ?= cc
CFLAGS   ?= -O2 -g
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CPPFLAGS += -Iinclude -D_GNU_SOURCE
LDLIBS   += -lpthread

ifeq ($(SAN),1)
  BUILD    := build/san
  CFLAGS   := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDFLAGS  += -fsanitize=address,undefined
else ifeq ($(TSAN),1)
  BUILD    := build/tsan
  CFLAGS   := -O1 -g -fno-omit-frame-pointer -fsanitize=thread
  LDFLAGS  += -fsanitize=thread
else
  BUILD    := build/rel
  LINK     := sockflow
endif

LIB_SRC  := $(wildcard src/lib/*.c) $(wildcard src/svc/*.c)
CMD_SRC  := $(wildcard src/cmd/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
PIC_OBJ  := $(LIB_SRC:%.c=$(BUILD)/pic/%.o)
CMD_OBJ  := $(CMD_SRC:%.c=$(BUILD)/%.o)
HEADERS  := $(wildcard include/sockflow/*.h)
PRIV_HDR := $(wildcard src/*/*.h)

STATIC   := $(BUILD)/libsockflow.a
SHARED   := $(BUILD)/libsockflow.so.$(VERSION)
SONAME   := libsockflow.so.0
BIN      := $(BUILD)/sockflow

EXAMPLES := tcp_server tcp_client udp_server udp_client
EX_BIN   := $(EXAMPLES:%=$(BUILD)/examples/%)

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
# Programs the end-to-end tests run besides sockflow (tests/helpers/*.c).
HELPERS  := $(patsubst tests/helpers/%.c,$(BUILD)/tests/helpers/%,$(wildcard tests/helpers/*.c))

.PHONY: all lib examples test unit e2e examples-test demo install uninstall clean deps bench fuzz
all: lib $(BIN) $(LINK)

lib: $(STATIC) $(SHARED)
examples: $(EX_BIN)

# ./sockflow points at the release build, so README examples run from the top.
sockflow: $(BIN)
	@ln -sf $(BIN) sockflow

$(BUILD)/%.o: %.c $(HEADERS) $(PRIV_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -c -o $@ $<

$(BUILD)/pic/%.o: %.c $(HEADERS) $(PRIV_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -fPIC -fvisibility=default -c -o $@ $<

$(STATIC): $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(SHARED): $(PIC_OBJ) src/lib/libsockflow.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=src/lib/libsockflow.map $(LDFLAGS) -o $@ $(PIC_OBJ) $(LDLIBS)
	@ln -sf libsockflow.so.$(VERSION) $(BUILD)/$(SONAME)
	@ln -sf $(SONAME) $(BUILD)/libsockflow.so

$(BIN): $(CMD_OBJ) $(STATIC)
	$(CC) $(LDFLAGS) -o $@ $(CMD_OBJ) $(STATIC) $(LDLIBS) -lm

$(BUILD)/examples/%: examples/%.c $(STATIC) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) $(LDFLAGS) -o $@ $< $(STATIC) $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(wildcard tests/unit/unit.h) $(STATIC) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Isrc $(CFLAGS) $(WARN) -Wno-missing-prototypes $(LDFLAGS) -o $@ $< $(STATIC) $(LDLIBS) -lcmocka

$(BUILD)/tests/helpers/%: tests/helpers/%.c $(STATIC) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -Wno-missing-prototypes $(LDFLAGS) -o $@ $< $(STATIC) $(LDLIBS)

# Test dependencies: installed with apt-get when run as root, else named.
deps:
	@sh tests/deps.sh

unit: deps $(UNIT_BIN)
	@sh tests/run-unit.sh $(UNIT_BIN)

e2e: deps all examples $(HELPERS)
	SOCKFLOW=$(abspath $(BIN)) SOCKFLOW_EXAMPLES=$(abspath $(BUILD)/examples) \
	  SOCKFLOW_HELPERS=$(abspath $(BUILD)/tests/helpers) \
	  /usr/bin/python3 -m pytest -q -rs -p no:cacheprovider tests/e2e

test: unit e2e fuzz

demo: $(BIN)
	@$(BIN) demo

bench: all
	@sh bench/compare

.PHONY: bench-quick
bench-quick: all
	@sh bench/compare --quick

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	  $(DESTDIR)$(PREFIX)/include/sockflow $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/sockflow
	install -m 644 $(STATIC) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(SHARED) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libsockflow.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libsockflow.so
	install -m 644 $(HEADERS) $(DESTDIR)$(PREFIX)/include/sockflow/
	install -m 644 man/sockflow.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' sockflow.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/sockflow.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/sockflow $(DESTDIR)$(PREFIX)/lib/libsockflow.* \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig/sockflow.pc $(DESTDIR)$(PREFIX)/share/man/man1/sockflow.1
	rm -rf $(DESTDIR)$(PREFIX)/include/sockflow

clean:
	rm -rf build sockflow

# libFuzzer harnesses (clang): `make fuzz` runs each for FUZZ_RUNS inputs from its corpus,
# FUZZ_TIME seconds at most, so that six harnesses take two minutes at most; `make
# fuzz-long` gives each FUZZ_LONG_TIME seconds (or: make fuzz FUZZ_RUNS=N FUZZ_TIME=S).
FUZZ_RUNS ?= 200000
FUZZ_TIME ?= 20
FUZZ_LONG_TIME ?= 600
FUZZ_BIN  := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_LIB  := $(LIB_SRC) src/cmd/opts.c
# The option harness takes the command's parsers: every command file but main.c's main().
FUZZ_CMD  := $(filter-out src/cmd/main.c,$(CMD_SRC))
FUZZ_CC   := clang $(CPPFLAGS) -Isrc -g -O1 -fsanitize=fuzzer,address,undefined

build/fuzz/%: tests/fuzz/%.c $(FUZZ_LIB) $(HEADERS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -o $@ $< $(FUZZ_LIB) $(LDLIBS) -lm

build/fuzz/fuzz_opts: tests/fuzz/fuzz_opts.c $(LIB_SRC) $(FUZZ_CMD) $(HEADERS) $(PRIV_HDR)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -o $@ $< $(LIB_SRC) $(FUZZ_CMD) $(LDLIBS) -lm

# The chat harness stands in for the server's connection calls: chat.c alone.
build/fuzz/fuzz_chat: tests/fuzz/fuzz_chat.c src/svc/chat.c src/lib/err.c $(HEADERS)
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) -g -O1 -fsanitize=fuzzer,address,undefined -o $@ $< src/svc/chat.c src/lib/err.c

.PHONY: fuzz-long
fuzz: deps $(FUZZ_BIN)
	@sh tests/fuzz/run.sh $(FUZZ_RUNS) $(FUZZ_TIME) $(FUZZ_BIN)

fuzz-long: deps $(FUZZ_BIN)
	@sh tests/fuzz/run.sh 0 $(FUZZ_LONG_TIME) $(FUZZ_BIN)
