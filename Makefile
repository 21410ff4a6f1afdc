# mod_web_push: `make` builds build/mod_web_push/, `make test` runs every test.

CARGO   ?= cargo
LUA     ?= lua5.4
BUSTED  ?= $(LUA) /usr/bin/busted
DESTDIR ?=
MODULES_DIR ?= /usr/local/lib/prosody/modules

OUT := build/mod_web_push
LIB := target/release/libweb_push.so
# The module's own files: mod_web_push.lua and the libraries it loads with module:require, and the
# web client files it serves over HTTP (DESIGN.md "Web client files"), in web/ beside them.
LUA_FILES := $(notdir $(wildcard lua/*.lua))
WEB_FILES := $(notdir $(wildcard web/*.js))

# What building and the unit tests need; the end-to-end and browser suites install their own.
BUILD_DEBS := libssl-dev pkg-config liblua5.4-dev
TEST_DEBS  := lua5.4 lua-busted lua-check prosody python3-venv

.PHONY: all deps test test-deps test-rust test-spec test-native test-e2e test-browser lint demo bench install clean

all: $(OUT)/web_push.so $(addprefix $(OUT)/,$(LUA_FILES)) $(addprefix $(OUT)/web/,$(WEB_FILES))

deps:
	@tools/deps.sh $(BUILD_DEBS) $(TEST_DEBS)

$(LIB): Cargo.toml Cargo.lock build.rs $(wildcard src/*.rs src/*/*.rs)
	@tools/deps.sh $(BUILD_DEBS)
	$(CARGO) build --release --locked

$(OUT)/web_push.so: $(LIB)
	@mkdir -p $(OUT)
	cp $(LIB) $@

$(OUT)/%.lua: lua/%.lua
	@mkdir -p $(OUT)
	cp $< $@

$(OUT)/web/%.js: web/%.js
	@mkdir -p $(OUT)/web
	cp $< $@

test: deps all lint test-deps test-rust test-spec test-native test-e2e test-browser
	@echo "make test: every suite passed"

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --locked --all-targets -- -D warnings
	luacheck -q lua spec

# The shipped library's dependencies, checked offline: no rsa, duplicates only with a reason.
test-deps:
	tools/check-deps.sh

test-rust:
	$(CARGO) test --release --locked

# Some specs run Prosody 13's own util.watchdog, from the copy the e2e setup unpacks.
test-spec: all
	tests/e2e/setup.sh
	$(BUSTED) --lpath='spec/?.lua;spec/helpers/?.lua' spec

# The native library's output checked by implementations not written here (http_ece, PyJWT).
test-native: all
	tests/native/run

test-e2e: all
	tests/e2e/run

test-browser: all
	tests/browser/run

demo: all
	tests/demo/run

bench: all
	bench/run

install: all
	install -d $(DESTDIR)$(MODULES_DIR)/mod_web_push
	install -m 0644 $(addprefix $(OUT)/,$(LUA_FILES)) $(DESTDIR)$(MODULES_DIR)/mod_web_push/
	install -m 0755 $(OUT)/web_push.so $(DESTDIR)$(MODULES_DIR)/mod_web_push/web_push.so
	install -d $(DESTDIR)$(MODULES_DIR)/mod_web_push/web
	install -m 0644 $(addprefix $(OUT)/web/,$(WEB_FILES)) $(DESTDIR)$(MODULES_DIR)/mod_web_push/web/
	@echo "Installed into $(DESTDIR)$(MODULES_DIR)/mod_web_push"

clean:
	rm -rf build
