# switchyard — `make demo` runs the main job, `make test` passes the tests.
# Both fetch what they need by themselves, once, into ignored folders:
# .venv/ (Python tooling and ONNX Runtime's library from the onnxruntime
# wheel) and .tools/ (Debian's prometheus package, for promtool).

SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/switchyard/target
CARGO ?= cargo
VENV := .venv
PY := $(VENV)/bin/python

ORT_LIB = $(firstword $(wildcard $(VENV)/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.*))

.PHONY: demo test venv ort tools build build-release fmt-check clippy cargo-test py-test bench models fuzz clean

venv: $(VENV)/.requirements.sha256
$(VENV)/.requirements.sha256: python/requirements.txt scripts/bootstrap-python.sh
	scripts/bootstrap-python.sh

# ONNX Runtime's shared library comes from the pinned onnxruntime wheel.
ort: venv
	@test -n "$(ORT_LIB)" || { echo "onnxruntime's library is missing from $(VENV); remove $(VENV) and retry"; exit 1; }

tools:
	scripts/fetch-prometheus.sh

build: ort
	$(CARGO) build --workspace --bins

build-release: ort
	$(CARGO) build --release -p gateway -p controller

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

cargo-test: ort tools
	ORT_DYLIB_PATH=$(abspath $(ORT_LIB)) PATH=$(abspath .tools/prometheus/usr/bin):$$PATH \
	$(CARGO) test --workspace

py-test: ort tools build
	ORT_DYLIB_PATH=$(abspath $(ORT_LIB)) \
	SWITCHYARD_GATEWAY_BIN=$(CARGO_TARGET_DIR)/debug/gateway \
	PATH=$(abspath .tools/prometheus/usr/bin):$$PATH \
	$(PY) -m pytest -q python/tests

test: fmt-check clippy cargo-test py-test

# Two gateways, a canary promote under traffic, drift, a rolled-back
# promote, a summary: scripts/demo.py says what it does.
demo: build-release
	ORT_DYLIB_PATH=$(abspath $(ORT_LIB)) \
	SWITCHYARD_GATEWAY_BIN=$(CARGO_TARGET_DIR)/release/gateway \
	SWITCHYARD_CONTROLLER_BIN=$(CARGO_TARGET_DIR)/release/controller \
	$(PY) scripts/demo.py

# Regenerates models/ and smoke-tests/ (deterministic: the same files come
# out): the boosted, linear and mlp examples, then the dropout example.
models: venv
	$(PY) models/make_models.py
	$(PY) models/student_dropout.py

clean:
	rm -rf $(VENV) .tools
