#!/usr/bin/env bash
# Install faceagent as a systemd service from a checkout (development; devices install the .deb: README).
# Idempotent: run it again to upgrade.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: sudo systemd/install.sh [--start] [--apt] [--device-id ID] [--root DIR] [--no-systemctl] [--pip-args "ARGS"]

Installs faceagent as a systemd service: the faceagent user, a venv in /opt/faceagent, /etc/faceagent/agent.yaml
(only when absent), the credential files and the unit. Idempotent: run it again from a newer checkout to upgrade.

  --apt            apt-get install python3-venv (and python3-picamera2 python3-opencv on Raspberry Pi OS)
  --start          start (or restart) the service after installing
  --device-id ID   the device id for a new agent.yaml (default: <hostname>-<8 hex> from the Pi's serial number, else
                   from /etc/machine-id, so cards cloned from one image differ; the bare hostname `raspberrypi`,
                   which every fresh Raspberry Pi OS card has, is refused)
  --root DIR       install into DIR instead of / (for packaging and tests; implies --no-systemctl)
  --no-systemctl   do not run systemctl / systemd-sysusers
  --pip-args ARGS  extra arguments for pip install (e.g. "--no-deps" when the dependencies are preinstalled);
                   otherwise the dependencies are installed at the versions of packaging/requirements.lock
  -h, --help       this text

Secrets go into /etc/faceagent/credentials/ (root only, mode 0600; systemd hands them to the service):
tencentcloud_secret_id, tencentcloud_secret_key, tencentcloud_session_token (temporary keys only),
mqtt_password, command_hmac_key. TENCENTCLOUD_SECRET_ID / TENCENTCLOUD_SECRET_KEY set when this runs are written there.
Afterwards: sudo /opt/faceagent/bin/faceagent doctor (config, credentials, model, camera, broker, cloud, clock, disk).
EOF
}

SRC="$(cd "$(dirname "$0")/.." && pwd)"
ROOT=""
SYSTEMCTL=1
APT=0
START=0
PIP_ARGS=""
DEVICE_ID=""
# Where the hardware identity is read (overridable for tests of this script only).
SERIAL_FILE="${FACEAGENT_SERIAL_FILE:-/proc/device-tree/serial-number}"
MACHINE_ID_FILE="${FACEAGENT_MACHINE_ID_FILE:-/etc/machine-id}"
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="${2%/}"; SYSTEMCTL=0; shift 2 ;;
    --no-systemctl) SYSTEMCTL=0; shift ;;
    --apt) APT=1; shift ;;
    --start) START=1; shift ;;
    --pip-args) PIP_ARGS="$2"; shift 2 ;;
    --device-id) DEVICE_ID="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (sudo), or use --root DIR" >&2
  exit 1
fi

VENV="$ROOT/opt/faceagent"
ETC="$ROOT/etc/faceagent"
CREDS="$ETC/credentials"
say() { printf 'faceagent install: %s\n' "$*"; }

if [ "$APT" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  packages=(python3-venv python3-pip)
  if grep -qi raspberry /proc/device-tree/model 2>/dev/null; then
    packages+=(python3-picamera2 python3-opencv)
  fi
  apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

# The device id of a new agent.yaml: unique per card, stable across reboots. Not the hostname alone: every card
# cloned from one image has the same one, and two devices with one id take each other's broker session.
pick_device_id() {
  local host suffix=""
  host="$(hostname -s | tr -c 'A-Za-z0-9._\n-' '-')"
  case "$host" in raspberrypi|localhost|"") host="cam" ;; esac
  if [ -r "$SERIAL_FILE" ]; then
    suffix="$(tr -dc '0-9a-fA-F' < "$SERIAL_FILE" | tail -c 8 | tr 'A-F' 'a-f')"
  fi
  if [ -z "$suffix" ] && [ -r "$MACHINE_ID_FILE" ]; then  # regenerated at first boot on Raspberry Pi OS
    suffix="$(tr -dc '0-9a-f' < "$MACHINE_ID_FILE" | head -c 8)"
  fi
  if [ -n "$suffix" ]; then
    printf '%s-%s' "${host:0:55}" "$suffix"
  elif [ "$host" != cam ]; then
    printf '%s' "$host"
  fi
}
if [ ! -e "$ETC/agent.yaml" ] && [ -z "$DEVICE_ID" ]; then
  DEVICE_ID="$(pick_device_id)"
  if [ -z "$DEVICE_ID" ]; then
    echo "install.sh: no serial number or /etc/machine-id to tell this device from its clones, and the hostname is" \
         "the image's default: give one with --device-id NAME" >&2
    exit 1
  fi
fi
if [ -n "$DEVICE_ID" ] && ! [[ "$DEVICE_ID" =~ ^[A-Za-z0-9._-]{1,64}$ ]]; then
  echo "install.sh: --device-id $DEVICE_ID: letters, digits, - _ . (1-64)" >&2
  exit 2
fi

# 1. the service user (systemd-sysusers reads the same file at boot)
install -D -m 0644 "$SRC/systemd/faceagent.sysusers" "$ROOT/etc/sysusers.d/faceagent.conf"
if [ "$SYSTEMCTL" = 1 ]; then
  systemd-sysusers /etc/sysusers.d/faceagent.conf
fi

# 2. a venv that sees apt's picamera2, libcamera, numpy and OpenCV
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  python3 -m venv --system-site-packages "$VENV"
fi
# The dependencies at exactly the versions of the lock (packaging/requirements.lock), as the .deb ships them.
pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
if [[ " $PIP_ARGS " == *" --no-deps "* ]]; then
  # shellcheck disable=SC2086
  "${pip[@]}" $PIP_ARGS "$SRC"
elif "$VENV/bin/python" -c "import numpy, cv2" 2>/dev/null; then
  # apt's numpy and OpenCV (Raspberry Pi OS): the lock's wheels, checked against its hashes, then faceagent.
  "${pip[@]}" --require-hashes -r "$SRC/packaging/requirements.lock"
  # shellcheck disable=SC2086
  "${pip[@]}" --no-deps $PIP_ARGS "$SRC"
else
  # No apt OpenCV in the venv's view: the headless wheel (and the numpy it needs), the rest at the lock's versions.
  python3 "$SRC/tools/lock.py" constraints > "$VENV/lock-constraints.txt"
  # shellcheck disable=SC2086
  "${pip[@]}" -c "$VENV/lock-constraints.txt" $PIP_ARGS "$SRC[opencv]"
fi
say "installed $("$VENV/bin/faceagent" --version)"

# 3. configuration, only if absent (an upgrade never overwrites the operator's file)
install -d -m 0755 "$ETC"
if [ ! -e "$ETC/agent.yaml" ]; then
  install -m 0644 "$SRC/config/agent.example.yaml" "$ETC/agent.yaml"
  sed -i "s|^device_id: cam-01 |device_id: $DEVICE_ID |" "$ETC/agent.yaml"
  # A Raspberry Pi with a camera on its ribbon cable: picamera2 (the example's files camera is for a first try elsewhere).
  if [ -z "$ROOT" ] && grep -qi raspberry /proc/device-tree/model 2>/dev/null &&
     "$VENV/bin/python" -c "from picamera2 import Picamera2; import sys; sys.exit(0 if Picamera2.global_camera_info() else 1)" 2>/dev/null; then
    sed -i "s|^  type: files   |  type: picamera2|" "$ETC/agent.yaml"
    say "a Raspberry Pi camera is connected: camera.type picamera2"
  fi
  say "wrote $ETC/agent.yaml (device_id $DEVICE_ID): edit mqtt.url, cloud.endpoint and camera"
else
  say "kept existing $ETC/agent.yaml"
fi

# 4. credentials: root-only files, read by systemd (LoadCredential=), never by the service user directly
install -d -m 0700 "$CREDS"
# Every file the unit's LoadCredential= names must exist, even empty, or systemd refuses to start the service.
for name in tencentcloud_secret_id tencentcloud_secret_key tencentcloud_session_token mqtt_password command_hmac_key; do
  file="$CREDS/$name"
  [ -e "$file" ] || install -m 0600 /dev/null "$file"
  chmod 0600 "$file"
done
if [ -n "${TENCENTCLOUD_SECRET_ID:-}" ]; then printf '%s' "$TENCENTCLOUD_SECRET_ID" > "$CREDS/tencentcloud_secret_id"; fi
if [ -n "${TENCENTCLOUD_SECRET_KEY:-}" ]; then printf '%s' "$TENCENTCLOUD_SECRET_KEY" > "$CREDS/tencentcloud_secret_key"; fi

# 5. the unit
install -D -m 0644 "$SRC/systemd/faceagent.service" "$ROOT/etc/systemd/system/faceagent.service"
if [ "$SYSTEMCTL" = 1 ]; then
  systemctl daemon-reload
  systemctl enable faceagent.service
  if [ "$START" = 1 ]; then systemctl restart faceagent.service; fi
  say "enabled faceagent.service; check with: systemctl status faceagent; journalctl -u faceagent -f"
fi
if [ ! -s "$CREDS/tencentcloud_secret_key" ]; then
  say "put the Tencent Cloud keys into $CREDS/tencentcloud_secret_id and tencentcloud_secret_key"
fi
