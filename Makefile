# `make space` sets up .venv and runs the main job; `make test` sets up .venv and runs the test suite.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first and pinned: here it comes from the machine's local wheel store (a CUDA build that also runs on CPU)
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?= -m "not slow"

.PHONY: install space test

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[all]"
	# test data only: the full-body photo assets/bus.jpg inside this wheel (AGPL-3.0; the package is never imported)
	$(PY) -m pip install --quiet --no-deps ultralytics==8.4.190
	touch $@

# Debian's Chromium for the Space's browser tests (playwright cannot download its own browser here)
install: $(VENV)/.installed
	@test -x /usr/bin/chromium || { apt-get update -qq && apt-get install -y -qq chromium; }

# the Space on the embedded model: http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT to change)
space: install
	$(PY) spaces/app.py

test: install
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False \
		$(PY) -m pytest $(PYTEST_ARGS)
