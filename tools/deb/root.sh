#!/usr/bin/env bash
# A Debian bookworm root (Raspberry Pi OS Bookworm's Debian) to install the faceagent .deb into, for ARCH amd64
# or arm64 (under qemu-user): what the package Depends on from apt, preinstalled, so that installing the .deb
# needs no network, and mosquitto for the demo. Built once into $DEB_ROOT_CACHE/bookworm-ARCH (default
# .cache/deb-roots in this checkout, gitignored) and reused while its stamp exists; prints the root's path.
# tools/deb/install-check.sh works on a throwaway copy, so the cached root stays as built.
# Needs root (mmdebstrap --mode=root); installs mmdebstrap (and qemu-user-static, binfmt-support for arm64).
set -euo pipefail
cd "$(dirname "$0")/../.."

ARCH=${1:?usage: tools/deb/root.sh amd64|arm64}
CACHE=${DEB_ROOT_CACHE:-$PWD/.cache/deb-roots}
ROOT=$CACHE/bookworm-$ARCH
STAMP=$ROOT/.faceagent-root-complete
# The package's Depends from apt (debian/control), and mosquitto for `faceagent demo`-style checks.
PACKAGES=python3,python3-numpy,python3-opencv,adduser,mosquitto,ca-certificates

log() { printf 'deb-root: %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "must run as root (chroot)"; exit 1; }
if [ -e "$STAMP" ]; then echo "$ROOT"; exit 0; fi

need=""
command -v mmdebstrap >/dev/null 2>&1 || need="$need mmdebstrap"
if [ "$ARCH" != "$(dpkg --print-architecture)" ]; then
  [ -x /usr/bin/qemu-aarch64-static ] || need="$need qemu-user-static"
  command -v update-binfmts >/dev/null 2>&1 || need="$need binfmt-support"
  command -v arch-test >/dev/null 2>&1 || need="$need arch-test"
fi
if [ -n "$need" ]; then
  log "installing$need"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # shellcheck disable=SC2086  # one word per package
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
if [ "$ARCH" = arm64 ]; then
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 \
    || update-binfmts --import qemu-aarch64
fi

# The host's own Debian bookworm mirrors, so the root has the same package versions; deb.debian.org otherwise.
# shellcheck disable=SC2016  # apt's own format placeholders
sources=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Created-By: Packages' 2>/dev/null \
  | awk '$2 ~ /^bookworm(-updates|-security)?$/ {print "deb " $1 " " $2 " main"}' | sort -u)
if [ -z "$sources" ]; then
  sources=$(printf 'deb http://deb.debian.org/debian bookworm main\ndeb http://deb.debian.org/debian bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main')
fi
log "bootstrapping Debian bookworm $ARCH into $ROOT"
rm -rf "$ROOT"
mkdir -p "$CACHE"
mmdebstrap --quiet --mode=root --arch="$ARCH" --variant=apt --include="$PACKAGES" \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  bookworm "$ROOT" - <<<"$sources"
touch "$STAMP"
echo "$ROOT"
