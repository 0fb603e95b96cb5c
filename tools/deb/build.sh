#!/usr/bin/env bash
# `make deb`: faceagent_<version>_<arch>.deb for Debian bookworm / Raspberry Pi OS Bookworm, built on any
# Debian machine for either architecture (no compiler, no emulation: only wheels and dpkg-deb).
#   usage: tools/deb/build.sh amd64|arm64 [OUT_DIR]     (OUT_DIR default dist/)
# /opt/faceagent is a venv over /usr/bin/python3.11 that sees apt's site-packages (numpy, OpenCV, picamera2);
# its lib/ holds exactly the wheels of packaging/requirements.lock for that architecture, checked against the
# lock's hashes when they are downloaded (cached in .cache/wheels/<arch>), and faceagent's own wheel.
# Installing the package needs no network. The package layout is listed in the README (Installing the package).
set -euo pipefail
cd "$(dirname "$0")/../.."

ARCH=${1:?usage: tools/deb/build.sh amd64|arm64 [OUT_DIR]}
OUT=${2:-dist}
PYTHON=${PYTHON:-python3}
case $ARCH in
  amd64) WHEEL_ARCH=x86_64 ;;
  arm64) WHEEL_ARCH=aarch64 ;;
  *) echo "deb: unknown architecture $ARCH (amd64 or arm64)" >&2; exit 2 ;;
esac
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' agent/__init__.py)
PYVER=3.11  # Debian bookworm's python3; the lock is resolved for it
SITE=opt/faceagent/lib/python$PYVER/site-packages
WHEELS=.cache/wheels/$ARCH
WORK=$(mktemp -d /tmp/faceagent-deb.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
STAGE=$WORK/root
say() { printf 'deb %s: %s\n' "$ARCH" "$*"; }

platforms=()
for minor in $(seq 36 -1 17); do platforms+=("--platform=manylinux_2_${minor}_$WHEEL_ARCH"); done
platforms+=("--platform=manylinux2014_$WHEEL_ARCH")
target=("${platforms[@]}" "--python-version=$PYVER" --implementation=cp "--abi=cp${PYVER/./}" --only-binary=:all:)

say "the locked wheels (packaging/requirements.lock, hashes checked)"
mkdir -p "$WHEELS"
"$PYTHON" -m pip download --quiet --disable-pip-version-check --require-hashes --no-deps "${target[@]}" \
  -d "$WHEELS" -r packaging/requirements.lock
mkdir -p "$WORK/wheels"
# Only the files the lock names (the cache may hold older ones): each locked name==version, this arch's file.
"$PYTHON" - "$WHEELS" "$WORK/wheels" <<'PY'
import hashlib, shutil, sys
from pathlib import Path
sys.path.insert(0, "tools")
from lock import read_lock, normalize
cache, dest = Path(sys.argv[1]), Path(sys.argv[2])
_, pins = read_lock()
for wheel in sorted(cache.glob("*.whl")):
    name, version = wheel.name.split("-")[:2]
    pin = pins.get(normalize(name))
    if pin and pin[0] == version and hashlib.sha256(wheel.read_bytes()).hexdigest() in pin[1]:
        shutil.copy(wheel, dest)
        pins.pop(normalize(name))
if pins:
    sys.exit(f"deb: no wheel in {cache} for {', '.join(sorted(pins))}")
PY
say "faceagent $VERSION's wheel"
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$WORK/wheels" . >/dev/null
rm -rf build

say "the venv /opt/faceagent"
"$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --no-index --no-compile "${target[@]}" \
  --target "$STAGE/$SITE" "$WORK"/wheels/*.whl
rm -rf "$STAGE/$SITE/bin"
# Scripts and records that name the build machine's paths are not needed in an installed venv.
find "$STAGE/$SITE" -name RECORD -path '*.dist-info/*' -exec sed -i '/^\.\.\/\.\.\/\|^bin\//d' {} +
mkdir -p "$STAGE/opt/faceagent/bin"
ln -s /usr/bin/python$PYVER "$STAGE/opt/faceagent/bin/python3"
ln -s python3 "$STAGE/opt/faceagent/bin/python"
ln -s python3 "$STAGE/opt/faceagent/bin/python$PYVER"
ln -s lib "$STAGE/opt/faceagent/lib64"
printf 'home = /usr/bin\ninclude-system-site-packages = true\nversion = %s\nexecutable = /usr/bin/python%s\n' \
  "$PYVER" "$PYVER" > "$STAGE/opt/faceagent/pyvenv.cfg"
cat > "$STAGE/opt/faceagent/bin/faceagent" <<'PY'
#!/opt/faceagent/bin/python3
import sys

from agent.cli import main

if __name__ == "__main__":
    sys.exit(main())
PY
chmod 0755 "$STAGE/opt/faceagent/bin/faceagent"
install -D -m 0644 packaging/requirements.lock "$STAGE/opt/faceagent/requirements.lock"
mkdir -p "$STAGE/usr/bin"
ln -s /opt/faceagent/bin/faceagent "$STAGE/usr/bin/faceagent"

say "configuration, unit, documentation"
# The conffile: the example, with device_id left to its default (the hostname) instead of the example's cam-01.
install -D -m 0644 config/agent.example.yaml "$STAGE/etc/faceagent/agent.yaml"
sed -i 's|^device_id: cam-01 |# device_id: cam-01|' "$STAGE/etc/faceagent/agent.yaml"
install -D -m 0644 systemd/faceagent.service "$STAGE/lib/systemd/system/faceagent.service"
sed -i 's|^# Installed by systemd/install.sh to .*|# Installed by the faceagent package (or systemd/install.sh into /etc/systemd/system).|' \
  "$STAGE/lib/systemd/system/faceagent.service"
install -D -m 0644 packaging/deb/copyright "$STAGE/usr/share/doc/faceagent/copyright"
install -D -m 0644 packaging/deb/lintian-overrides "$STAGE/usr/share/lintian/overrides/faceagent"
date=$(git log -1 --format=%aD 2>/dev/null || date -R)
printf 'faceagent (%s) bookworm; urgency=medium\n\n  * faceagent %s, Python dependencies from packaging/requirements.lock.\n\n -- faceagent developers <faceagent@example.org>  %s\n' \
  "$VERSION" "$VERSION" "$date" | gzip -9n > "$STAGE/usr/share/doc/faceagent/changelog.gz"
find "$STAGE" -type d -exec chmod 0755 {} +
find "$STAGE" -type f ! -perm -u+x -exec chmod 0644 {} +
find "$STAGE" -type f -perm -u+x -exec chmod 0755 {} +
# Modules and compiled extensions are imported, never run: no file of the venv's lib/ is executable.
find "$STAGE/opt/faceagent/lib" -type f -exec chmod 0644 {} +
# Timestamps from the commit, so that two builds of one commit give the same files.
stamp=$(git log -1 --format=%ct 2>/dev/null || date +%s)
find "$STAGE" -exec touch -h -d "@$stamp" {} +

mkdir -p "$STAGE/DEBIAN"
size=$(du -sk --apparent-size "$STAGE" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$size/" packaging/deb/control.in > "$STAGE/DEBIAN/control"
echo /etc/faceagent/agent.yaml > "$STAGE/DEBIAN/conffiles"
for script in postinst prerm postrm; do install -m 0755 "packaging/deb/$script" "$STAGE/DEBIAN/$script"; done
(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$STAGE/DEBIAN/md5sums"
chmod 0644 "$STAGE/DEBIAN/control" "$STAGE/DEBIAN/conffiles" "$STAGE/DEBIAN/md5sums"

mkdir -p "$OUT"
deb="$OUT/faceagent_${VERSION}_$ARCH.deb"
SOURCE_DATE_EPOCH=$stamp dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$deb" >/dev/null
say "built $deb ($(du -h "$deb" | cut -f1))"
