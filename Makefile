# The two set-up commands of README.md:
#   make demo   -- install, start MariaDB + Elasticsearch, load demo data, run `cdc run`
#   make test   -- install, start the servers, run unit + integration tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test test-parallel unit deps servers-up servers-down bench clean

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

deps:
	bash scripts/install-system-deps.sh

demo: deps $(BIN)/.installed
	$(BIN)/python scripts/demo.py

test: deps $(BIN)/.installed
	$(BIN)/python -m pyflakes cdc scripts tests bench
	$(BIN)/python -m mypy cdc
	# the tests against cdc's types (the fakes against cdc/stream/protocols.py), the bodies of test
	# functions included (setup.cfg check_untyped_defs), in two runs: each folder has a
	# conftest.py, and the integration tests import harness.py and scripts/servers.py by name
	MYPYPATH=scripts $(BIN)/python -m mypy tests/unit tests/conftest.py
	MYPYPATH=tests/integration:scripts $(BIN)/python -m mypy tests/integration
	# the documentation site (mkdocs.yml): any warning fails, a broken link or anchor included
	$(BIN)/mkdocs build --strict --quiet
	# the native row path's own tests (native/src), when there is a Rust toolchain
	if command -v cargo >/dev/null; then cargo test --release --quiet --manifest-path native/Cargo.toml; fi
	# with cargo here the native module must have been built: a missing one fails the run
	# instead of skipping its tests (tests/conftest.py _require_native)
	CDC_REQUIRE_NATIVE=$$(command -v cargo >/dev/null && echo 1 || echo 0) $(BIN)/pytest

# Opt-in: two pytest-xdist workers; tests marked serial in tests/conftest.py run alone
# (docs/development.md "In parallel": measured, not faster on the shared 2-core machine, so not the default).
test-parallel: deps $(BIN)/.installed
	$(BIN)/python -m pyflakes cdc scripts tests bench
	$(BIN)/pytest -n 2

unit: $(BIN)/.installed
	$(BIN)/pytest -m "not integration"

servers-up: deps
	$(PYTHON) scripts/servers.py up

servers-down:
	$(PYTHON) scripts/servers.py down

bench: deps $(BIN)/.installed
	$(BIN)/python bench/catchup.py

clean:
	rm -rf $(VENV) build *.egg-info
