# Two commands for a fresh Debian/Ubuntu machine with Python 3.11+:  make demo  |  make test
# Class demo: make app (the app as a web page on 127.0.0.1:8866; APP_ARGS="--host 0.0.0.0 --port 9000")
# Installs are idempotent: a stamp keyed on pyproject.toml + constraints.txt skips them when done.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.emolib-installed
DEMO_OUT ?= demo_out

.PHONY: install system-deps browser-deps demo app lint test lock retrain clean

install: system-deps $(STAMP)

# FluidSynth's shared library (pyfluidsynth loads it); pretty_midi ships the soundfont itself.
system-deps:
	@if ldconfig -p 2>/dev/null | grep -q 'libfluidsynth\.so\.3'; then :; else \
	  echo "installing libfluidsynth3 (apt)" >&2; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends libfluidsynth3 >/dev/null; \
	fi

# Chromium for the browser tests (Debian's package; Playwright drives it, nothing is downloaded by Playwright).
browser-deps:
	@if [ -x /usr/bin/chromium ]; then :; else \
	  echo "installing chromium (apt)" >&2; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	fi

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=77"
	$(PY) -m pip install -q -c constraints.txt -e ".[cpu,dev,train]"
	@# basic-pitch last and without its declared deps (they pin TF < 2.15.1): see constraints.txt
	$(PY) -m pip install -q --no-deps -c constraints.txt basic-pitch
	@touch $(STAMP)

demo: install
	$(PY) -m emolib image2music emolib/assets/astronaut.jpg --out $(DEMO_OUT)

# The app alone as a web page (Voila), offline; Ctrl-C stops it. See README "Class demo (instructors)".
APP_ARGS ?=
app: install
	$(PY) -m emolib app $(APP_ARGS)

# Static checks (config in pyproject.toml); `make test` runs them first.
lint: install
	$(PY) -m ruff check emolib tests benchmarks drive_mount.py
	$(PY) -m mypy

test: install browser-deps lint
	$(PY) -m pytest

# Scheduled retraining (papermill + promotion gate): see README "Scheduled retraining".
RETRAIN_CONFIG ?= retrain.yaml
retrain: install
	$(PY) -m emolib retrain --config $(RETRAIN_CONFIG)

# Refresh the lock from the working venv after a deliberate upgrade, then regenerate environment.yml.
lock:
	@{ sed -n '/^# Regenerate/q;p' constraints.txt; sed -n '/^# Regenerate/p' constraints.txt; \
	   $(PY) -m pip freeze --exclude-editable | sed 's/^tensorflow_cpu==/tensorflow-cpu==/'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	$(PY) .ci/environment_yml.py > environment.yml

clean:
	rm -rf $(VENV) $(DEMO_OUT) emolib_app_out tests/artifacts build dist
