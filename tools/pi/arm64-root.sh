#!/usr/bin/env bash
# A Debian bookworm arm64 root for running faceagent under qemu-user: apt's python3, numpy and OpenCV,
# as on Raspberry Pi OS Bookworm (64-bit). Built once into $ARM64_CACHE and reused while its stamp exists.
# Needs root (chroot, binfmt_misc); installs qemu-user-static, binfmt-support and mmdebstrap with apt when missing.
set -euo pipefail

CACHE=${ARM64_CACHE:-$HOME/.cache/faceagent-arm64}
ROOT=$CACHE/bookworm-arm64
STAMP=$ROOT/.faceagent-root-complete
# What a Pi needs from apt (README, "Raspberry Pi setup"), minus the camera stack, which is Raspberry Pi OS's own.
PACKAGES=python3,python3-venv,python3-numpy,python3-opencv,ca-certificates

log() { printf 'arm64-root: %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { log "must run as root (chroot and binfmt_misc)"; exit 1; }

need=""
[ -x /usr/bin/qemu-aarch64-static ] || need="$need qemu-user-static"
command -v update-binfmts >/dev/null 2>&1 || need="$need binfmt-support"
command -v mmdebstrap >/dev/null 2>&1 || need="$need mmdebstrap"
command -v arch-test >/dev/null 2>&1 || need="$need arch-test"
command -v unshare >/dev/null 2>&1 || need="$need util-linux"
if [ -n "$need" ]; then
  log "installing$need"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # shellcheck disable=SC2086  # one word per package
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

# Let the kernel hand arm64 ELF files to qemu (the F flag opens the interpreter now, so it works inside a chroot).
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || update-binfmts --import qemu-aarch64
fi
grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 || { log "binfmt qemu-aarch64 is disabled"; exit 1; }

# Each run, as the host has them now: the resolver, and the CA bundle pip inside the root verifies the
# package registry with (the host's own, so the root trusts exactly what the host's pip trusts).
refresh_host_files() {
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
  cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/host-ca-certificates.crt"
  printf '[global]\ncert = /etc/ssl/host-ca-certificates.crt\n' > "$ROOT/etc/pip.conf"
}

if [ -e "$STAMP" ]; then
  refresh_host_files
  echo "$ROOT"
  exit 0
fi

# The same mirrors as this machine's own apt sources (only Debian bookworm's suites), so the root sees the
# same package versions as the host; deb.debian.org when the host lists none.
# shellcheck disable=SC2016  # apt's own format placeholders
sources=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Created-By: Packages' 2>/dev/null \
  | awk '$2 ~ /^bookworm(-updates|-security)?$/ {print "deb " $1 " " $2 " main"}' | sort -u)
if [ -z "$sources" ]; then
  sources=$(printf 'deb http://deb.debian.org/debian bookworm main\ndeb http://deb.debian.org/debian bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main')
fi
log "bootstrapping Debian bookworm arm64 into $ROOT from:"
printf '  %s\n' "${sources//$'\n'/$'\n'  }" >&2

rm -rf "$ROOT"
mkdir -p "$CACHE"
# No manuals, documentation or translations: less to unpack under emulation, and no man-db run.
mmdebstrap --quiet --mode=root --arch=arm64 --variant=apt --include="$PACKAGES" \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  bookworm "$ROOT" - <<<"$sources"
refresh_host_files
touch "$STAMP"
echo "$ROOT"
