#!/usr/bin/env bash
# Install faceagent as a systemd service from a checkout (development; devices install the .deb: README).
# Idempotent: run it again to upgrade.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: sudo systemd/install.sh [--start] [--apt] [--root DIR] [--no-systemctl] [--pip-args "ARGS"]

Installs faceagent as a systemd service: the faceagent user, a venv in /opt/faceagent, /etc/faceagent/agent.yaml
(only when absent), the credential files and the unit. Idempotent: run it again from a newer checkout to upgrade.

  --apt            apt-get install python3-venv (and python3-picamera2 python3-opencv on Raspberry Pi OS)
  --start          start (or restart) the service after installing
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
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="${2%/}"; SYSTEMCTL=0; shift 2 ;;
    --no-systemctl) SYSTEMCTL=0; shift ;;
    --apt) APT=1; shift ;;
    --start) START=1; shift ;;
    --pip-args) PIP_ARGS="$2"; shift 2 ;;
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
  sed -i "s|^device_id: cam-01 |device_id: $(hostname -s | tr -c 'A-Za-z0-9._\n-' '-') |" "$ETC/agent.yaml"
  say "wrote $ETC/agent.yaml: edit mqtt.url, cloud.endpoint and camera"
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
