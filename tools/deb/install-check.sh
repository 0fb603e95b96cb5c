#!/usr/bin/env bash
# `make test-deb` (and, for arm64, `make test-arm64`): the .deb installed as a user installs it, on Debian
# bookworm (Raspberry Pi OS Bookworm's Debian), without network, then upgraded over itself and purged.
#   usage: tools/deb/install-check.sh amd64|arm64 faceagent_<version>_<arch>.deb
# 1. `apt-get install ./faceagent_...deb` into a throwaway overlay of the cached root (tools/deb/root.sh), in a
#    network namespace with only loopback: the install needs no network;
# 2. the installed faceagent: --version, the user, the credentials folder (0700), check-config, doctor's checks
#    that need no broker or cloud (credentials, model, camera on the files camera, disk), the demo from the
#    installed package (its own mosquitto and IAI emulator on the namespace's loopback), doctor --report;
# 3. the same package with a higher version installed over it: the edited agent.yaml, the credentials and the
#    state are kept, and faceagent works again;
# 4. `apt-get purge faceagent`: every file, folder and account it made is gone (compared with the root before).
# Runs in private mount and network namespaces: nothing is mounted on or sent from the host, and no host service
# is touched (no systemd runs in the root). arm64 runs under qemu-user as a Cortex-A72 (QEMU_CPU to change).
set -euo pipefail
cd "$(dirname "$0")/../.."

ARCH=${1:?usage: tools/deb/install-check.sh amd64|arm64 DEB}
DEB=$(realpath "${2:?usage: tools/deb/install-check.sh amd64|arm64 DEB}")
if [ -z "${FACEAGENT_DEB_NS:-}" ]; then
  BASE=$(tools/deb/root.sh "$ARCH")
  exec unshare --mount --net --propagation private -- env FACEAGENT_DEB_NS=1 BASE="$BASE" "$0" "$@"
fi

STARTED=$SECONDS
say() { printf '\n== test-deb %s [%ds]: %s\n' "$ARCH" $((SECONDS - STARTED)) "$*"; }
fail() { printf 'test-deb %s: FAILED: %s\n' "$ARCH" "$*" >&2; exit 1; }
ip link set lo up
WORK=$(mktemp -d /tmp/faceagent-deb-check.XXXXXX)
trap 'umount -R "$WORK/root" 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/upper" "$WORK/overlay-work" "$WORK/root"
mount -t overlay overlay -o "lowerdir=$BASE,upperdir=$WORK/upper,workdir=$WORK/overlay-work" "$WORK/root"
ROOT=$WORK/root
if [ "$ARCH" = arm64 ]; then
  inroot() { tools/pi/arm64-run.sh "$ROOT" "$@"; }  # its own /proc, /dev and a Pi's /proc/cpuinfo
else
  mount -t proc proc "$ROOT/proc"
  mount --rbind /dev "$ROOT/dev"
  inroot() { chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
fi
apt_get() { inroot /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Use-Pty=0 "$@"; }

VERSION=$(dpkg-deb -f "$DEB" Version)
SITE=/opt/faceagent/lib/python3.11/site-packages
PHOTO=$SITE/agent/devtools/demo_photos
installed_checks() {  # what a user runs after installing; $1: the version expected
  [ "$(inroot faceagent --version)" = "faceagent ${1%%+*}" ] || fail "faceagent --version: $(inroot faceagent --version)"
  [ "$(inroot dpkg-query -W -f '${Version}' faceagent)" = "$1" ] || fail "the installed version is not $1"
  inroot getent passwd faceagent | grep -q ':/var/lib/faceagent:/usr/sbin/nologin$' || fail "no faceagent system user"
  inroot id -nG faceagent | grep -qw video || fail "faceagent is not in group video"
  [ "$(stat -c %a "$ROOT/etc/faceagent/credentials")" = 700 ] || fail "/etc/faceagent/credentials is not 0700"
  for f in "$ROOT"/etc/faceagent/credentials/*; do [ "$(stat -c %a "$f")" = 600 ] || fail "$f is not 0600"; done
  [ "$(inroot stat -c "%a %U" /var/lib/faceagent)" = "700 faceagent" ] || fail "/var/lib/faceagent is not faceagent's, 0700"
  inroot dpkg-query -W -f '${Conffiles}\n' faceagent | grep -q '/etc/faceagent/agent.yaml' || fail "agent.yaml is not a conffile"
  inroot faceagent check-config --config /etc/faceagent/agent.yaml > "$WORK/check-config.txt" \
    || { cat "$WORK/check-config.txt"; fail "faceagent check-config"; }
  inroot faceagent doctor --config /etc/faceagent/agent.yaml --skip broker --skip cloud > "$WORK/doctor.txt" \
    || { cat "$WORK/doctor.txt"; fail "faceagent doctor (offline checks)"; }
  sed 's/^/  /' "$WORK/doctor.txt"
}

say "apt-get install ./$(basename "$DEB") (Debian bookworm $ARCH, no network)"
cp "$DEB" "$ROOT/tmp/"
apt_get install --no-install-recommends "/tmp/$(basename "$DEB")" > "$WORK/install.log" 2>&1 \
  || { cat "$WORK/install.log"; fail "apt-get install"; }
grep -E '^(Setting up|faceagent:)' "$WORK/install.log" | sed 's/^/  /'

say "the installed faceagent: check-config, doctor without broker and cloud, on the files camera"
# What an operator does first: the keys into the credentials folder, agent.yaml edited (here: the camera).
printf %s AKIDinstallcheck > "$ROOT/etc/faceagent/credentials/tencentcloud_secret_id"
printf %s install-check-secret-key > "$ROOT/etc/faceagent/credentials/tencentcloud_secret_key"
sed -i "s|^  path: /srv/frames |  path: $PHOTO |" "$ROOT/etc/faceagent/agent.yaml"
grep -q "path: $PHOTO" "$ROOT/etc/faceagent/agent.yaml" || fail "could not point the camera at the bundled photos"
installed_checks "$VERSION"

say "the demo from the installed package (private mosquitto and IAI emulator on loopback)"
inroot /opt/faceagent/bin/python3 -m agent.devtools.demo > "$WORK/demo.txt" 2>&1 || { cat "$WORK/demo.txt"; fail "the demo"; }
grep -E '^(result|broker|agent|cloud)' "$WORK/demo.txt" | sed 's/^/  /' || true

say "faceagent doctor --report"
inroot faceagent doctor --config /etc/faceagent/agent.yaml --skip broker --skip cloud --report /tmp/report.json \
  > /dev/null || fail "faceagent doctor --report"
inroot /opt/faceagent/bin/python3 -c 'import json; r = json.load(open("/tmp/report.json")); o, d = r["onnxruntime"], r["detector"]
print("  sections:", ", ".join(r)); print("  installed as", r["faceagent"]["installed_as"], "on", r["os"]["pretty_name"], r["kernel"]["machine"])
print("  onnxruntime", o["version"], "CPU features", " ".join(o["cpu"]["features"]) or "-", "threads", o["threads"])
print("  detector", d["ms_per_frame"], "ms per frame; RSS after a dry-run enrollment", r["memory"]["rss_mb"], "MB")'
! grep -q install-check-secret-key "$ROOT/tmp/report.json" || fail "the report contains the SecretKey"

say "upgrade: the same package as version $VERSION+1 installed over it"
echo "install-check $$" > "$ROOT/var/lib/faceagent/state-marker"
before_config=$(sha256sum < "$ROOT/etc/faceagent/agent.yaml")
before_keys=$(cat "$ROOT"/etc/faceagent/credentials/* | sha256sum)
dpkg-deb -R "$DEB" "$WORK/next"
sed -i "s/^Version: .*/Version: $VERSION+1/" "$WORK/next/DEBIAN/control"
dpkg-deb --root-owner-group -Zgzip -z1 --build "$WORK/next" "$ROOT/tmp/faceagent_next.deb" >/dev/null
apt_get install --no-install-recommends /tmp/faceagent_next.deb > "$WORK/upgrade.log" 2>&1 \
  || { cat "$WORK/upgrade.log"; fail "the upgrade"; }
grep -q "^Preparing to unpack /tmp/faceagent_next.deb" "$WORK/upgrade.log" || fail "apt did not upgrade"
[ "$(sha256sum < "$ROOT/etc/faceagent/agent.yaml")" = "$before_config" ] || fail "the upgrade changed the edited agent.yaml"
[ "$(cat "$ROOT"/etc/faceagent/credentials/* | sha256sum)" = "$before_keys" ] || fail "the upgrade changed the credentials"
grep -q "install-check $$" "$ROOT/var/lib/faceagent/state-marker" || fail "the upgrade lost the state"
installed_checks "$VERSION+1"
echo "  agent.yaml, credentials and state kept; faceagent works"

say "apt-get purge faceagent: nothing it made is left"
apt_get purge faceagent > "$WORK/purge.log" 2>&1 || { cat "$WORK/purge.log"; fail "apt-get purge"; }
rm -f "$ROOT"/tmp/faceagent_*.deb "$ROOT/tmp/report.json"
# Every path the overlay's upper layer holds is a change to the root: it must be the package manager's own
# bookkeeping, or a file rewritten with its old content (the account databases), else the package left it.
left=$(cd "$WORK/upper" && find . -mindepth 1 \( -path ./proc -o -path ./dev -o -path ./sys -o -path ./tmp -o -path ./run \
  -o -path ./var/lib/dpkg -o -path ./var/lib/apt -o -path ./var/log -o -path ./var/cache/apt -o -path ./var/cache/debconf \
  -o -path ./var/cache/ldconfig -o -path ./root \) -prune -o -print | sed 's|^\./||' | sort | while IFS= read -r path; do
    lower="$BASE/$path" upper="$WORK/upper/$path"
    if [ -d "$upper" ] && [ ! -L "$upper" ]; then [ -d "$lower" ] || echo "$path/ (a new folder)"
    elif [ -c "$upper" ]; then echo "$path (deleted from the root)"
    elif [ -e "$lower" ] && cmp -s "$lower" "$upper"; then :
    elif [[ "$path" =~ ^etc/(passwd|group|shadow|gshadow)-$ ]]; then :  # the account tools' backup of the previous state
    else echo "$path (${lower:+changed}, new or changed)"; fi
  done)
[ -z "$left" ] || { printf '  %s\n' "$left"; fail "apt-get purge left these behind"; }
! inroot getent passwd faceagent >/dev/null || fail "the faceagent user is still there"
! inroot getent group faceagent >/dev/null || fail "the faceagent group is still there"
echo "  no file, folder, user or group of faceagent left"

say "passed: $(basename "$DEB") installed offline, ran, upgraded with config, credentials and state kept, purged clean"
