#!/usr/bin/env bash
# Remove the faceagent service and its venv. Configuration, credentials and state are kept unless --purge.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: sudo systemd/uninstall.sh [--purge] [--root DIR] [--no-systemctl]

Stops and removes the faceagent service and its venv (/opt/faceagent), and the device's Home Assistant entities
when home_assistant.discovery is on. Configuration, credentials and state are kept unless --purge.

  --purge          also remove /etc/faceagent (configuration and credentials), /var/lib/faceagent and the user
  --root DIR       uninstall from DIR instead of / (implies --no-systemctl)
  --no-systemctl   do not run systemctl
  -h, --help       this text
EOF
}

ROOT=""
SYSTEMCTL=1
PURGE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="${2%/}"; SYSTEMCTL=0; shift 2 ;;
    --no-systemctl) SYSTEMCTL=0; shift ;;
    --purge) PURGE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "uninstall.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
  echo "uninstall.sh: run as root (sudo), or use --root DIR" >&2
  exit 1
fi

if [ "$SYSTEMCTL" = 1 ]; then
  systemctl disable --now faceagent.service 2>/dev/null || true
fi
# Home Assistant entities the device announced go with it: an empty retained config removes each one
# (only when home_assistant.discovery is on; the secrets come from the credentials folder beside agent.yaml).
# Not with --root: a staging tree's config names a live broker, and staging touches nothing live.
if [ -n "$ROOT" ]; then
  echo "faceagent uninstall: --root: the Home Assistant entities were left alone (no broker is contacted from a staging tree)"
elif [ -x "$ROOT/opt/faceagent/bin/faceagent" ] && [ -e "$ROOT/etc/faceagent/agent.yaml" ]; then
  "$ROOT/opt/faceagent/bin/faceagent" ha remove --if-enabled --config "$ROOT/etc/faceagent/agent.yaml" ||
    echo "faceagent uninstall: the Home Assistant entities were not removed; later: faceagent ha remove --config ..." >&2
fi
rm -f "$ROOT/etc/systemd/system/faceagent.service"
rm -rf "$ROOT/opt/faceagent"
if [ "$SYSTEMCTL" = 1 ]; then systemctl daemon-reload; fi
if [ "$PURGE" = 1 ]; then
  rm -rf "$ROOT/etc/faceagent" "$ROOT/var/lib/faceagent" "$ROOT/var/cache/faceagent" "$ROOT/etc/sysusers.d/faceagent.conf"
  if [ "$SYSTEMCTL" = 1 ] && id faceagent >/dev/null 2>&1; then userdel faceagent || true; fi
  echo "faceagent uninstall: removed everything, including configuration, credentials and state"
else
  echo "faceagent uninstall: kept $ROOT/etc/faceagent and $ROOT/var/lib/faceagent (use --purge to remove them)"
fi
