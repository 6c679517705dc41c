# Vireo — the two commands a newcomer needs:
#   make run    install what is missing, build, start Vireo with the demo VM
#   make test   install what the tests need, run every test tier
# and, for measurements against QEMU on the same machine:
#   make bench

CARGO ?= cargo
PREFIX ?= /usr/local

.PHONY: run test bench fuzz build translations lint setup-run setup-test setup-bench setup-fuzz clean install uninstall

build: translations
	$(CARGO) build --release

setup-run:
	scripts/setup.sh run

setup-test:
	scripts/setup.sh test

setup-bench:
	scripts/setup.sh bench

run: setup-run build
	scripts/demo.sh

# Real clients the tests drive (vncdo, qemu.qmp) live in build/venv.
# VIREO_REQUIRE_TOOLS=1 makes a missing tool fail its test instead of
# skipping it: the setup step installed them all.
# The Linux test guest, and its desktop variant, are built (once, then
# cached outside the checkout: tests/linux/build.sh) before the tests that
# boot them start.
test: setup-test translations
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	tests/linux/build.sh
	tests/linux/build.sh --variant desktop
	PATH="$(CURDIR)/build/venv/bin:$$PATH" VIREO_REQUIRE_TOOLS=1 $(CARGO) test --release --all-targets

bench: setup-bench build
	scripts/bench.sh

# AFL++ over the parsers a guest or client controls (README, Fuzzing):
# TARGET=all or one of src/fuzz's targets, SECONDS per target.
TARGET ?= all
SECONDS ?= 600
setup-fuzz:
	scripts/setup.sh fuzz

fuzz: setup-fuzz
	scripts/fuzz.sh $(TARGET) $(SECONDS)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean

# Installation for distribution packagers (and the Flatpak, which runs
# `make install PREFIX=/app`): `make install PREFIX=/usr DESTDIR=pkgroot`.
# It installs the release binaries as built (vireo, and vireo-vmm, the VM
# process); only when they are missing does it build them, so `sudo make install` after `make build` never runs cargo as
# root. The translations are the .mo files build.rs compiled into
# build/locale (remade from po/ here if missing or stale); the binary finds them, and the firmware directory, relative
# to itself (bin/../share), so any PREFIX works without rebuilding.
# share/vireo/firmware is where packagers put SeaBIOS's bios-256k.bin and
# vgabios-stdvga.bin; Vireo also looks in /usr/share/seabios (Debian's
# seabios package), so depending on that package works as well.
APP_ID = dev.vireo.Vireo
BINARY = target/release/vireo
# The VM process (one per running VM), a second binary without GTK;
# `vireo` starts it from beside itself.
VMM_BINARY = target/release/vireo-vmm
LANGUAGES = $(shell sed -e 's/\#.*//' po/LINGUAS)
ICONS = $(patsubst data/icons/%,%,$(wildcard data/icons/hicolor/*/apps/*))
bindir = $(DESTDIR)$(PREFIX)/bin
datadir = $(DESTDIR)$(PREFIX)/share
schemadir = $(datadir)/glib-2.0/schemas

MO_FILES = $(foreach lang,$(LANGUAGES),build/locale/$(lang)/LC_MESSAGES/vireo.mo)

$(BINARY) $(VMM_BINARY):
	$(CARGO) build --release

# The catalogues a binary run from the checkout reads (build/locale). build.rs
# writes them too, but cargo does not run it again when only build/ is gone
# (a clean checkout with target/ kept), so make remakes what is missing.
translations: $(MO_FILES)

# The same files build.rs writes; made here too, as a fresh binary does not
# rerun build.rs. Written aside and renamed, so two makes at once (the
# install tests) never leave a half-written catalogue.
build/locale/%/LC_MESSAGES/vireo.mo: po/%.po
	mkdir -p $(@D)
	msgfmt --check -o $@.$$$$ $< && mv -f $@.$$$$ $@

install: $(BINARY) $(VMM_BINARY) $(MO_FILES)
	install -Dm755 $(BINARY) $(bindir)/vireo
	install -Dm755 $(VMM_BINARY) $(bindir)/vireo-vmm
	install -Dm644 data/$(APP_ID).desktop $(datadir)/applications/$(APP_ID).desktop
	install -Dm644 data/$(APP_ID).metainfo.xml $(datadir)/metainfo/$(APP_ID).metainfo.xml
	install -Dm644 data/$(APP_ID).gschema.xml $(schemadir)/$(APP_ID).gschema.xml
	$(foreach icon,$(ICONS),install -Dm644 data/icons/$(icon) $(datadir)/icons/$(icon) &&) true
	$(foreach lang,$(LANGUAGES),install -Dm644 build/locale/$(lang)/LC_MESSAGES/vireo.mo $(datadir)/locale/$(lang)/LC_MESSAGES/vireo.mo &&) true
	install -d $(datadir)/vireo/firmware
	$(if $(DESTDIR),,glib-compile-schemas $(schemadir))

uninstall:
	rm -f $(bindir)/vireo $(bindir)/vireo-vmm
	rm -f $(datadir)/applications/$(APP_ID).desktop
	rm -f $(datadir)/metainfo/$(APP_ID).metainfo.xml
	rm -f $(schemadir)/$(APP_ID).gschema.xml
	rm -f $(foreach icon,$(ICONS),$(datadir)/icons/$(icon))
	rm -f $(foreach lang,$(LANGUAGES),$(datadir)/locale/$(lang)/LC_MESSAGES/vireo.mo)
	-rmdir $(datadir)/vireo/firmware $(datadir)/vireo 2>/dev/null
	$(if $(DESTDIR),,if [ -d $(schemadir) ]; then glib-compile-schemas $(schemadir); fi)
