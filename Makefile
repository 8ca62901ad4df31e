# Chronik developer and CI entry points.
#
#   make build     debug build of every binary in the workspace
#   make release   optimised build of every binary
#   make run       optimised standalone broker on 127.0.0.1:9092, data in ./data
#   make deps      what the tests need (kcat, iptables, a JDK and Maven, Node.js and npm from apt, a Python
#                  venv in .venv, kafkajs in tests/js/node_modules from npm, the Java client module in
#                  tests/java resolved and compiled, Apache Kafka 4.4.0's jars in tests/reference/lib from
#                  Maven Central); idempotent
#   make test      deps, cargo tests, debug binaries, then the client-compatibility suite (pytest)
#   make test-kafka  the client-compatibility suite against Apache Kafka 4.4.0 (pytest --broker=kafka)
#   make test-kafka-ci  the part of it that CI runs (the single-broker modules)
#   make bench     release binaries and Apache Kafka's jars, then the Chronik-only scenarios and Chronik vs
#                  Apache Kafka side by side (~35 min); writes docs/benchmarks.md
#   make ecosystem  Kafka Streams, Kafka Connect and MirrorMaker 2 against three Chronik nodes (minutes)
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

.PHONY: build release run deps deps-apt deps-venv deps-quix deps-node deps-java deps-kafka deps-mm2 ecosystem test test-kafka test-kafka-ci bench chaos docs fmt clippy clean

build:
	$(CARGO) build --workspace --bins

release:
	$(CARGO) build --release --workspace --bins

run:
	$(CARGO) run --release --bin chronik-server -- standalone --data-dir ./data --kafka-addr 127.0.0.1:9092

deps: deps-apt deps-venv deps-quix deps-node deps-java deps-kafka deps-mm2

# Debian packages the tests use, as command:package: kcat (a librdkafka client), iptables (network
# faults inside namespaces, tests/netns.py), a JDK and Maven (the Java client module tests/java and
# the reference Apache Kafka broker, tests/reference/), Node.js and npm (kafkajs, tests/js), and g++
# and make (node-gyp builds the native lz4 binding of kafkajs-lz4), and the openssl CLI (test
# certificates for TLS, SASL_SSL and RPC mTLS; the broker itself uses rustls). `apt-get update` only
# when apt knows no candidate yet (fresh machine).
APT_PACKAGES := kcat:kcat iptables:iptables javac:openjdk-17-jdk-headless mvn:maven node:nodejs npm:npm \
	g++:g++ make:make openssl:openssl
deps-apt:
	@missing=""; \
	for cp in $(APT_PACKAGES); do command -v $${cp%%:*} >/dev/null 2>&1 || missing="$$missing $${cp#*:}"; done; \
	if [ -z "$$missing" ]; then \
	  echo "deps: apt packages present ($(foreach cp,$(APT_PACKAGES),$(lastword $(subst :, ,$(cp)))))"; \
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

# quixstreams (tests/test_quixstreams.py runs its app, tests/quix_count_app.py, as a process of its
# own) in a venv of its own: quixstreams 3.28.1 requires confluent-kafka < 2.13 and the suite pins
# 2.16.1. Same stamp rule as deps-venv; prebuilt wheels only (the requirements file says so).
QUIX_VENV := .venv-quix
QUIX_REQUIREMENTS := tests/requirements-quix.txt
QUIX_STAMP := $(QUIX_VENV)/.requirements.sha256
deps-quix:
	@want="$$(sha256sum $(QUIX_REQUIREMENTS) | cut -d' ' -f1)"; \
	have="$$(cat $(QUIX_STAMP) 2>/dev/null || true)"; \
	if [ "$$want" = "$$have" ] && $(QUIX_VENV)/bin/python -c 'import sys' >/dev/null 2>&1; then \
	  echo "deps: $(QUIX_VENV) up to date with $(QUIX_REQUIREMENTS)"; \
	else \
	  if ! $(QUIX_VENV)/bin/python -c 'import sys' >/dev/null 2>&1; then \
	    rm -rf $(QUIX_VENV); \
	    echo "deps: creating $(QUIX_VENV)"; \
	    $(PYTHON) -m venv $(QUIX_VENV); \
	  fi; \
	  echo "deps: installing $(QUIX_REQUIREMENTS) into $(QUIX_VENV)"; \
	  $(QUIX_VENV)/bin/python -m pip install --disable-pip-version-check -q -r $(QUIX_REQUIREMENTS); \
	  echo "$$want" > $(QUIX_STAMP); \
	fi

# kafkajs and its codec packages (tests/js, run by tests/test_kafkajs.py), pinned in package.json
# and package-lock.json: `npm ci` installs exactly the lock into tests/js/node_modules (ignored by
# git), again only when the lock's content differs from the stamp (or node_modules is gone), so a
# second run runs no npm and downloads nothing. Node.js and npm come from deps-apt.
JS_DIR := tests/js
JS_STAMP := $(JS_DIR)/node_modules/.package-lock.sha256
deps-node:
	@want="$$(cat $(JS_DIR)/package.json $(JS_DIR)/package-lock.json | sha256sum | cut -d' ' -f1)"; \
	have="$$(cat $(JS_STAMP) 2>/dev/null || true)"; \
	if [ "$$want" = "$$have" ]; then \
	  echo "deps: $(JS_DIR)/node_modules up to date with its package-lock.json"; \
	else \
	  echo "deps: npm ci in $(JS_DIR)"; \
	  (cd $(JS_DIR) && npm ci --no-audit --no-fund --loglevel=error); \
	  echo "$$want" > $(JS_STAMP); \
	fi

# The Java client module (tests/java, run by tests/test_java_client.py with `mvn -o`): resolved
# from Maven Central into ~/.m2 and compiled once, again only when the pom's content differs from
# the stamp (or target/ is gone). The run without a broker skips every test, but makes surefire
# fetch its JUnit provider, which dependency:go-offline does not. Maven and the JDK come from
# deps-apt.
JAVA_DIR := tests/java
JAVA_STAMP := $(JAVA_DIR)/target/.pom.sha256
# Maven's own JVM: bounded heap, quick start (the tests' JVM is bounded in the pom).
MVN := MAVEN_OPTS="-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1" mvn -B -q -Dstyle.color=never
deps-java:
	@want="$$(sha256sum $(JAVA_DIR)/pom.xml | cut -d' ' -f1)"; \
	have="$$(cat $(JAVA_STAMP) 2>/dev/null || true)"; \
	if [ "$$want" = "$$have" ]; then \
	  echo "deps: $(JAVA_DIR) up to date with its pom.xml"; \
	else \
	  echo "deps: resolving and compiling $(JAVA_DIR) (Maven Central)"; \
	  (cd $(JAVA_DIR) && $(MVN) dependency:go-offline && env -u KAFKA_BOOTSTRAP $(MVN) test -Dbootstrap=); \
	  echo "$$want" > $(JAVA_STAMP); \
	fi

# Apache Kafka 4.4.0 (broker, storage tool, tools) for the differential tests, resolved by Maven from
# tests/reference/pom.xml into tests/reference/lib (ignored by git). The folder is complete only when
# it holds the stamp, the sha256 of the pom it was resolved from: Maven copies into a temporary
# folder that is renamed once the copy succeeded, then one broker start writes a class-data sharing
# archive (lib/kafka.jsa: starts take 3-6 s instead of 9-10 s), then the stamp is written; so an
# interrupted run is redone, and a second run with the same pom starts no Maven and downloads nothing.
KAFKA_POM := tests/reference/pom.xml
KAFKA_LIB := tests/reference/lib
KAFKA_STAMP := $(KAFKA_LIB)/.pom.sha256
deps-kafka:
	@want="$$(sha256sum $(KAFKA_POM) | cut -d' ' -f1)"; \
	have="$$(cat $(KAFKA_STAMP) 2>/dev/null || true)"; \
	if [ "$$want" = "$$have" ]; then \
	  echo "deps: $(KAFKA_LIB) up to date with $(KAFKA_POM)"; \
	else \
	  echo "deps: resolving $(KAFKA_POM) into $(KAFKA_LIB) (Maven)"; \
	  rm -rf $(KAFKA_LIB).tmp; \
	  mvn -B -q -Dstyle.color=never -f $(KAFKA_POM) dependency:copy-dependencies \
	    -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/$(KAFKA_LIB).tmp; \
	  rm -rf $(KAFKA_LIB); \
	  mv $(KAFKA_LIB).tmp $(KAFKA_LIB); \
	  $(PYTHON) tests/reference/kafka.py cds || echo "deps: no CDS archive; Kafka starts slower"; \
	  echo "$$want" > $(KAFKA_STAMP); \
	fi

# MirrorMaker 2 (connect-mirror 4.3.1 with its own release's clients and runtime) for the
# migration test, into tests/reference/mm2/lib (ignored by git): same stamp rule as deps-kafka.
MM2_POM := tests/reference/mm2/pom.xml
MM2_LIB := tests/reference/mm2/lib
MM2_STAMP := $(MM2_LIB)/.pom.sha256
deps-mm2:
	@want="$$(sha256sum $(MM2_POM) | cut -d' ' -f1)"; \
	have="$$(cat $(MM2_STAMP) 2>/dev/null || true)"; \
	if [ "$$want" = "$$have" ]; then \
	  echo "deps: $(MM2_LIB) up to date with $(MM2_POM)"; \
	else \
	  echo "deps: resolving $(MM2_POM) into $(MM2_LIB) (Maven)"; \
	  rm -rf $(MM2_LIB).tmp; \
	  mvn -B -q -Dstyle.color=never -f $(MM2_POM) dependency:copy-dependencies \
	    -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/$(MM2_LIB).tmp; \
	  rm -rf $(MM2_LIB); \
	  mv $(MM2_LIB).tmp $(MM2_LIB); \
	  echo "$$want" > $(MM2_STAMP); \
	fi

test: deps
	$(CARGO) test --workspace
	$(CARGO) build --workspace --bins
	$(VENV)/bin/pytest tests/ -v --timeout=$(PYTEST_TIMEOUT_S) -m "not ecosystem" $(PYTEST_ARGS)

# Kafka Streams exactly-once, Kafka Connect in distributed mode and a MirrorMaker 2 migration from
# Apache Kafka, each against three Chronik nodes (tests marked `ecosystem`; minutes each, so not in
# `make test`). `make ecosystem PYTEST_ARGS=--broker=kafka` runs the Streams and Connect ones against
# Apache Kafka.
ecosystem: deps
	$(CARGO) build -p chronik-server --bin chronik-server
	$(VENV)/bin/pytest tests/ -v --timeout=900 -m ecosystem $(PYTEST_ARGS)

# The same suite against the reference broker; tests marked chronik_only are skipped.
test-kafka: deps
	$(VENV)/bin/pytest tests/ -v --broker=kafka --timeout=$(PYTEST_TIMEOUT_S) $(PYTEST_ARGS)

# What CI runs against Apache Kafka (.ci/run, after `make test`): the client suites, the single-broker
# modules and the three-node ones (about 14 min on Kafka, measured 2026-12-07: 7m54s single-broker, 6m
# three-node). Deselected: test_offsets' SIGKILL test (failed once on Kafka under load).
KAFKA_CI_TESTS := tests/test_confluent.py tests/test_kafka_python.py tests/test_kcat.py \
	tests/test_bad_input.py tests/test_offsets.py tests/test_groups.py tests/test_group_admin.py \
	tests/test_group_restart.py tests/test_idempotence.py tests/test_crash.py tests/test_many_clients.py \
	tests/test_retention.py tests/test_offsets_retention.py tests/test_bench.py tests/test_hardening_net.py \
	tests/test_aiokafka.py tests/test_kafkajs.py tests/test_topic_configs.py tests/test_delete_records.py \
	tests/test_authorized_operations.py tests/test_cluster.py tests/test_replication.py \
	tests/test_kafka_admin.py tests/test_replica_placement.py tests/test_scram_users.py tests/test_acls.py \
	tests/test_quixstreams.py tests/test_transactions.py tests/test_exactly_once.py
test-kafka-ci: deps
	$(VENV)/bin/pytest $(KAFKA_CI_TESTS) -v --broker=kafka --timeout=$(PYTEST_TIMEOUT_S) \
	  --deselect tests/test_offsets.py::test_committed_offsets_and_metadata_survive_sigkill \
	  $(PYTEST_ARGS)

# BENCH_ARGS: e.g. `--seconds 10 --rounds 1`, `--only reference`, `--side-by-side --compare-only consume`
# (see scripts/bench.py --help). The side-by-side scenarios run Apache Kafka 4.4.0 and its perf tools from
# the jars deps-kafka resolves (a JDK and Maven from deps-apt).
BENCH_ARGS ?=
bench: release deps-apt deps-kafka deps-venv
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
	rm -rf $(VENV) ./data .pytest_cache tests/__pycache__ $(JAVA_DIR)/target $(JS_DIR)/node_modules $(KAFKA_LIB) $(KAFKA_LIB).tmp
