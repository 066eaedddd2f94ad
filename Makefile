# Keel: `make run` serves a working backend; `make test` runs every check CI runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PORT ?= 8000
export PORT

.PHONY: run test venv lint format typecheck boundaries migrations-check pytest clean

# Reinstalled only when a requirements file is newer than the last install.
$(VENV)/.installed: requirements/base.txt requirements/local.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Keel needs Python 3.11 or newer (set PYTHON=python3.X).")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
		echo "Could not create $(VENV): install Python's venv module (Debian/Ubuntu: apt install python3-venv)." >&2; \
		rm -rf $(VENV); exit 1; }
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/local.txt
	@touch $@

venv: $(VENV)/.installed

run: venv
	$(PY) manage.py keel_run --port $(PORT)

test: venv lint typecheck boundaries migrations-check pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: venv
	$(BIN)/mypy $$(ls apps/*/services.py apps/*/selectors.py apps/*/services/*.py apps/*/selectors/*.py 2>/dev/null)

boundaries: venv
	$(BIN)/lint-imports

migrations-check: venv
	DJANGO_SETTINGS_MODULE=config.settings.test $(PY) manage.py makemigrations --check --dry-run

# The realtime tests run in a process of their own: they drive long-lived
# event-loop state (the hub, the relay, the blocking-call context) that other
# suites' leftovers in the same process can disturb (see docs/decisions.md).
pytest: venv
	$(BIN)/pytest --ignore=tests/realtime $(PYTEST_ARGS)
	$(BIN)/pytest tests/realtime $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
