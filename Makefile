# inferd — the two commands: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EXAMPLE_REPO := build/models
PORT ?= 8080
GRPC_PORT ?= 8081

# What the tests run for real: nginx (the control API behind a same-host proxy; the
# cluster tests), openssl (certificates for the TLS tests), Redis (the shared cache and rate limits) and
# HAProxy (tests/cluster), Chromium and its driver (the dashboard's browser test, driven by selenium).
SYSTEM_PACKAGES := nginx openssl redis-server haproxy chromium chromium-driver

.PHONY: install dev serve test lint typecheck unit bench bench-full bench-text bench-scaleout bench-shadow bench-latency clean proto system-deps

# What `make serve` installs besides inferd itself: `onnx` (ONNX Runtime, and onnx to build
# the example models) is all the default example needs. `make serve EXTRAS=all` adds torch
# and TensorFlow (tiny is then TorchScript, and tiny-tf is built); any extras of
# pyproject.toml, comma-separated (EXTRAS=onnx,torch). `make test` installs `dev`
# (everything the tests need) whatever EXTRAS says.
EXTRAS ?= onnx
comma := ,
INSTALLED := $(VENV)/.installed-$(subst $(comma),+,$(EXTRAS))
EXAMPLE_BUILT := $(EXAMPLE_REPO)/.built-$(subst $(comma),+,$(EXTRAS))

# uv installs the set in seconds where pip took 20-30 s, and shows its progress; it comes
# from PyPI into the venv first. uv reads no pip configuration: a folder of local wheels that
# pip is told of (PIP_FIND_LINKS) is passed on (UV_FIND_LINKS wins when set). Modules are
# compiled when first imported (uv's default), which keeps the venv 50 MB smaller.
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q uv
	UV_FIND_LINKS="$${UV_FIND_LINKS:-$${PIP_FIND_LINKS:-}}" $(VENV)/bin/uv pip install --python $(PY) -e '.[$(EXTRAS)]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $(INSTALLED) $@

install: $(INSTALLED)

dev: $(VENV)/.dev-installed

# Built again when EXTRAS changes: what is installed decides which examples are built.
$(EXAMPLE_BUILT): $(INSTALLED)
	rm -rf $(EXAMPLE_REPO)
	$(VENV)/bin/inferd example $(EXAMPLE_REPO)
	touch $@

serve: $(INSTALLED) $(EXAMPLE_BUILT)
	$(VENV)/bin/inferd serve $(EXAMPLE_REPO) --port $(PORT) --grpc-port $(GRPC_PORT) --default-model tiny

lint: dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: dev
	$(VENV)/bin/mypy

unit: dev
	$(PY) -m pytest -q

# Installs the missing SYSTEM_PACKAGES (apt-get update once); nothing when all are there.
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "missing system packages:$$missing (run make system-deps as root)" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

test: system-deps lint typecheck unit

# The hot path against its reference points (the floor on two stacks, a naive endpoint,
# the release before, every optional feature on), interleaved: benchmarks/hotpath.py.
bench: dev
	bash benchmarks/install-tools.sh
	$(PY) benchmarks/hotpath.py

# Every runtime, protocol and concurrency, one contestant after another: benchmarks/run.py.
bench-full: dev
	bash benchmarks/install-tools.sh
	$(PY) benchmarks/run.py

bench-text: dev
	$(PY) benchmarks/text.py

bench-scaleout: dev system-deps
	$(PY) benchmarks/scaleout.py

bench-shadow: dev
	bash benchmarks/install-tools.sh
	$(PY) benchmarks/shadow.py

bench-latency: dev
	$(PY) benchmarks/latency.py

PROTO_DIR := src/inferd/grpc/protos
# The protoc of this grpcio-tools stamps the generated modules with protobuf gencode 6.31.1,
# the lowest protobuf that pyproject.toml declares (tests/grpc/test_protos.py checks it);
# it runs from a venv of its own so that the project's protobuf is never touched.
# mypy-protobuf writes the typed stubs of the *_pb2_grpc modules (protoc's --pyi_out covers
# only the *_pb2 ones), so that mypy reads every generated module.
PROTO_TOOLS := grpcio-tools==1.80.1 mypy-protobuf==5.1.0
PROTO_VENV := build/proto-venv

$(PROTO_VENV)/.installed: Makefile
	$(PYTHON) -m venv $(PROTO_VENV)
	$(PROTO_VENV)/bin/pip install -q $(PROTO_TOOLS)
	touch $@

# Generated modules import each other as inferd.grpc.protos.* and register their
# descriptors in the package's own pool (see $(PROTO_DIR)/__init__.py).
proto: $(PROTO_VENV)/.installed
	$(PROTO_VENV)/bin/python -m grpc_tools.protoc -I $(PROTO_DIR) --python_out=$(PROTO_DIR) \
		--pyi_out=$(PROTO_DIR) --grpc_python_out=$(PROTO_DIR) \
		--plugin=protoc-gen-mypy_grpc=$(PROTO_VENV)/bin/protoc-gen-mypy_grpc \
		--mypy_grpc_out=$(PROTO_DIR) $(PROTO_DIR)/*.proto
	sed -i -E \
		-e 's/^import ([a-z_]+_pb2) as /from inferd.grpc.protos import \1 as /' \
		-e 's/_descriptor_pool\.Default\(\)/_inferd_protos.POOL/' \
		-e 's/^(from google\.protobuf import descriptor_pool as _descriptor_pool)$$/\1\nimport inferd.grpc.protos as _inferd_protos/' \
		$(PROTO_DIR)/*_pb2.py $(PROTO_DIR)/*_pb2_grpc.py
	sed -i -E 's/^import ([a-z_]+_pb2) as /from inferd.grpc.protos import \1 as /' \
		$(PROTO_DIR)/*_pb2.pyi $(PROTO_DIR)/*_pb2_grpc.pyi
	rm -f $(PROTO_DIR)/model_config_pb2_grpc.py $(PROTO_DIR)/model_config_pb2_grpc.pyi  # no services

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache
