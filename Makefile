# Chronik developer and CI entry points.
#
#   make build     debug build of every binary in the workspace
#   make release   optimised build of every binary
#   make run       optimised standalone broker on 127.0.0.1:9092, data in ./data
#   make deps      what the tests need (kcat and iptables from apt, a Python venv in .venv, the Java
#                  client module in tests/java resolved and compiled); idempotent
#   make test      deps, cargo tests, debug binaries, then the client-compatibility suite (pytest)
#   make bench     release binaries, then the standard scenarios; writes docs/benchmarks.md
#   make chaos     debug binaries, then CHAOS_FAULTS faults on a 3-node cluster; writes docs/reliability.md
#   make docs      regenerate the reference sections of docs/operations.md from the code
#   make fmt       rustfmt the workspace
#   make clippy    clippy on all targets, warnings are errors
#   make clean     remove build output, the venv and ./data

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
REQUIREMENTS := tests/requirements.txt
# Holds the sha256 of the requirements file the venv was last installed from.
VENV_STAMP := $(VENV)/.requirements.sha256
# Per-test limit for pytest, in seconds; a hung test fails instead of hanging CI.
PYTEST_TIMEOUT_S ?= 240
PYTEST_ARGS ?=

# Root runs apt-get directly; anyone else goes through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: build release run deps deps-apt deps-venv deps-java test bench chaos docs fmt clippy clean

build:
	$(CARGO) build --workspace --bins

release:
	$(CARGO) build --release --workspace --bins

run:
	$(CARGO) run --release --bin chronik-server -- standalone --data-dir ./data --kafka-addr 127.0.0.1:9092

deps: deps-apt deps-venv deps-java

# Debian packages the tests use: kcat (a librdkafka client) and iptables (network faults inside
# namespaces, tests/netns.py). `apt-get update` only when apt knows no candidate yet (fresh machine).
APT_PACKAGES := kcat iptables
deps-apt:
	@missing=""; \
	for p in $(APT_PACKAGES); do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then \
	  echo "deps: apt packages present ($(APT_PACKAGES))"; \
	else \
	  if ! apt-cache policy $$missing 2>/dev/null | grep -Eq 'Candidate: [0-9]'; then \
	    echo "deps: apt-get update"; \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update; \
	  fi; \
	  echo "deps: apt-get install$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

# The venv is (re)installed only when the requirements file's content differs from the stamp,
# or when the venv's interpreter is missing or broken.
deps-venv:
	@want="$$(sha256sum $(REQUIREMENTS) | cut -d' ' -f1)"; \
	have="$$(cat $(VENV_STAMP) 2>/dev/null || true)"; \
	if [ "$$want" = "$$have" ] && $(VENV)/bin/python -c 'import sys' >/dev/null 2>&1; then \
	  echo "deps: $(VENV) up to date with $(REQUIREMENTS)"; \
	else \
	  if ! $(VENV)/bin/python -c 'import sys' >/dev/null 2>&1; then \
	    rm -rf $(VENV); \
	    echo "deps: creating $(VENV)"; \
	    $(PYTHON) -m venv $(VENV); \
	  fi; \
	  echo "deps: installing $(REQUIREMENTS) into $(VENV)"; \
	  $(VENV)/bin/python -m pip install --disable-pip-version-check -q -r $(REQUIREMENTS); \
	  echo "$$want" > $(VENV_STAMP); \
	fi

# The Java client module (tests/java, run by tests/test_java_client.py with `mvn -o`): resolved
# from Maven Central into ~/.m2 and compiled once, again only when the pom's content differs from
# the stamp (or target/ is gone). The run without a broker skips every test, but makes surefire
# fetch its JUnit provider, which dependency:go-offline does not. Maven and a JDK come from apt
# when missing.
JAVA_DIR := tests/java
JAVA_STAMP := $(JAVA_DIR)/target/.pom.sha256
# Maven's own JVM: bounded heap, quick start (the tests' JVM is bounded in the pom).
MVN := MAVEN_OPTS="-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1" mvn -B -q -Dstyle.color=never
deps-java:
	@if ! command -v mvn >/dev/null 2>&1 || ! command -v javac >/dev/null 2>&1; then \
	  if ! apt-cache policy maven 2>/dev/null | grep -Eq 'Candidate: [0-9]'; then \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update; \
	  fi; \
	  echo "deps: apt-get install maven openjdk-17-jdk-headless"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends maven openjdk-17-jdk-headless; \
	fi; \
	want="$$(sha256sum $(JAVA_DIR)/pom.xml | cut -d' ' -f1)"; \
	have="$$(cat $(JAVA_STAMP) 2>/dev/null || true)"; \
	if [ "$$want" = "$$have" ]; then \
	  echo "deps: $(JAVA_DIR) up to date with its pom.xml"; \
	else \
	  echo "deps: resolving and compiling $(JAVA_DIR) (Maven Central)"; \
	  (cd $(JAVA_DIR) && $(MVN) dependency:go-offline && env -u KAFKA_BOOTSTRAP $(MVN) test -Dbootstrap=); \
	  echo "$$want" > $(JAVA_STAMP); \
	fi

test: deps
	$(CARGO) test --workspace
	$(CARGO) build --workspace --bins
	$(VENV)/bin/pytest tests/ -v --timeout=$(PYTEST_TIMEOUT_S) $(PYTEST_ARGS)

# BENCH_ARGS: e.g. `--seconds 10` or `--only reference` (see scripts/bench.py --help).
BENCH_ARGS ?=
bench: release
	$(PYTHON) scripts/bench.py $(BENCH_ARGS)

# Fault injection (tests/chaos/): network partitions, SIGKILL, SIGSTOP and disk full against 3
# nodes in network namespaces (needs root); exits non-zero when the checker finds a violation.
# CHAOS_ARGS: e.g. `--seed 42 --hold-max 5` (see `cd tests && python -m chaos --help`).
CHAOS_FAULTS ?= 100
CHAOS_ARGS ?=
chaos: deps
	$(CARGO) build -p chronik-server --bin chronik-server
	cd tests && $(abspath $(VENV))/bin/python -m chaos --faults $(CHAOS_FAULTS) --out ../docs/reliability.md $(CHAOS_ARGS)

# The settings and admin-command tables come from the clap definitions; a cargo test fails when
# the committed file differs (crates/chronik-docs/tests/operations_doc.rs).
docs:
	$(CARGO) run -q -p chronik-docs -- docs/operations.md

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf $(VENV) ./data .pytest_cache tests/__pycache__ $(JAVA_DIR)/target
