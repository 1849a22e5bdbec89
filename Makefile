# Each target installs what it needs on a fresh machine: uv (pip-installed when it is
# missing), then the locked environment (`uv sync --frozen`).
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
RUN := $(UV) run --frozen --extra dev

.PHONY: setup uv demo test lint format clean

uv:
	@command -v uv >/dev/null || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv

# --compile-bytecode: where Python writes no bytecode (PYTHONDONTWRITEBYTECODE), each CLI start
# in the tests would compile torch again: 9 s a start instead of 4.
.venv/.synced: pyproject.toml uv.lock
	@$(MAKE) --no-print-directory uv
	$(UV) sync --frozen --extra dev --compile-bytecode
	@touch $@

setup: .venv/.synced

demo: setup
	$(RUN) atrous demo

# One pytest-xdist worker per core (tests/conftest.py gives each one thread); --dist loadfile
# keeps a file's tests on one worker, so a module's trained-model fixture is built once.
# On 2 cores of an AMX Xeon, clean clone: 7 min 57 s; one process took 18 min 21 s there.
test: setup
	$(RUN) pytest -n auto --dist loadfile

lint: setup
	$(RUN) ruff check src tests scripts bench
	$(RUN) ruff format --check src tests scripts bench

format: setup
	$(RUN) ruff check --fix src tests scripts bench
	$(RUN) ruff format src tests scripts bench

clean:
	rm -rf .venv .pytest_cache .ruff_cache
