# Two commands set everything up: `make run` (the server, embedded defaults) and `make test`.
# Python 3.12 or newer (README, "Two commands"): python3.12 or python3.13 on PATH, else pyenv's.
PYTHON ?= $(shell ./bin/find-python)
VENV ?= .venv
PY := $(VENV)/bin/python
# The venv is made anew when the interpreter's version changes (a 3.11 venv is not reused).
PYVER := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run serve test deploy-check screenshots lint format migrate clean

$(VENV)/.installed-$(PYVER): requirements.txt requirements-dev.txt
	@test -n "$(PYTHON)" || { echo "Python 3.12 or newer is needed (README, Two commands)" >&2; exit 1; }
	@[ -x $(PY) ] && [ "$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "$(PYVER)" ] \
		&& rm -rf $(VENV) || true
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# Development server on SQLite and the in-memory layer: no services needed.
run: $(VENV)/.installed-$(PYVER)
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(PY) manage.py migrate --noinput
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(PY) manage.py runserver $(HOST):$(PORT)

# Production server process (see README, "Production"): set DJANGO_SECRET_KEY etc.
serve: $(VENV)/.installed-$(PYVER)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py serve --host $(HOST) --port $(PORT)

# The whole suite. With DATABASE_URL / REDIS_URL set it also runs on PostgreSQL and Redis;
# without them it runs on SQLite and the in-memory layer and reports what it skipped.
test: $(VENV)/.installed-$(PYVER)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest $(PYTEST_ARGS)

# docs/production.md followed on this machine: nginx, two processes, PostgreSQL, Redis,
# a browser, a rolling restart, the cron job (tests/deploy; also part of `make test`).
deploy-check: $(VENV)/.installed-$(PYVER)
	$(PY) -m pytest tests/deploy -v -s

# The README's pictures of the browser app (docs/screenshots/), from a real room in chromium
# (Debian's fonts-noto-color-emoji draws the emoji; without it they are boxes).
screenshots: $(VENV)/.installed-$(PYVER)
	SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(PY) -m pytest tests/browser/test_screenshots.py -q

lint: $(VENV)/.installed-$(PYVER)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.installed-$(PYVER)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
