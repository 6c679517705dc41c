# Vireo — the two commands a newcomer needs:
#   make run    install what is missing, build, start Vireo with the demo VM
#   make test   install what the tests need, run every test tier
# and, for measurements against QEMU on the same machine:
#   make bench

CARGO ?= cargo
PREFIX ?= /usr/local

.PHONY: run test bench build lint setup-run setup-test setup-bench clean

build:
	$(CARGO) build --release

setup-run:
	scripts/setup.sh run

setup-test:
	scripts/setup.sh test

setup-bench:
	scripts/setup.sh bench

run: setup-run build
	scripts/demo.sh

test: setup-test
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --release --all-targets

bench: setup-bench build
	scripts/bench.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean
