#!/usr/bin/env bash
# Run one command inside the arm64 root (tools/pi/arm64-root.sh) under qemu-user, as the CPU named by
# $QEMU_CPU (default cortex-a72, a Raspberry Pi 4's core; cortex-a53 is a Pi 3's and a Zero 2 W's).
#   usage: arm64-run.sh ROOT COMMAND [ARG...]
# /proc, /dev and a /sys describing the board's CPU are mounted in a private mount namespace: they vanish
# with the command, nothing is left mounted on the host. The process keeps this PID (exec all the way down), so signals reach the command.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 ROOT COMMAND [ARG...]" >&2; exit 2; }
ROOT=$1
shift
[ -x "$ROOT/usr/bin/python3" ] || { echo "arm64-run: $ROOT is not a bootstrapped root (run tools/pi/arm64-root.sh)" >&2; exit 2; }
export QEMU_CPU=${QEMU_CPU:-cortex-a72}
# A clean environment inside (the host's PATH, pip settings and venv do not apply there); qemu reads
# QEMU_CPU again at every exec, so it stays. FACEAGENT_* and TENCENTCLOUD_* pass through for the agent.
keep=(QEMU_CPU="$QEMU_CPU" HOME=/root LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
      PIP_DISABLE_PIP_VERSION_CHECK=1)
while IFS= read -r name; do keep+=("$name=${!name}"); done < <(compgen -e | grep -E '^(FACEAGENT|TENCENTCLOUD)_' || true)
# What the kernel of a board with this core shows in /proc/cpuinfo (per core). qemu-user 7.2 passes the host's
# x86 /proc/cpuinfo and /sys through, on which onnxruntime's CPU probe (pytorch/cpuinfo) crashes; a board has
# these instead. Feature lists are the boards' (BCM2711 and BCM2837/RP3A0 have no crypto extensions).
case $QEMU_CPU in
  cortex-a72) part=0xd08 variant=0x0 revision=3 features="fp asimd evtstrm crc32 cpuid" ;;  # Pi 4, Pi 400, CM4
  cortex-a53) part=0xd03 variant=0x0 revision=4 features="fp asimd evtstrm crc32 cpuid" ;;  # Pi 3, Zero 2 W
  cortex-a76) part=0xd0b variant=0x4 revision=1  # Pi 5
    features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" ;;
  *) echo "arm64-run: no board description for QEMU_CPU=$QEMU_CPU (cortex-a72, cortex-a53, cortex-a76)" >&2; exit 2 ;;
esac
cores=$(nproc)
cpuinfo=""
for ((n = 0; n < cores; n++)); do
  cpuinfo+=$(printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' \
    "$n" "$features" "$variant" "$part" "$revision")$'\n\n'
done
export CPUINFO=$cpuinfo CPUS="0-$((cores - 1))"

# shellcheck disable=SC2016  # expanded by the inner shell
exec unshare --mount --propagation private -- /bin/bash -c '
  root=$1; shift
  mount -t proc proc "$root/proc"
  mount -t tmpfs -o mode=0755 faceagent-sys "$root/sys"
  mkdir -p "$root/sys/devices/system/cpu"
  for f in possible present online; do echo "$CPUS" > "$root/sys/devices/system/cpu/$f"; done
  printf "%s" "$CPUINFO" > "$root/sys/devices/system/cpu/.cpuinfo"
  mount --bind "$root/sys/devices/system/cpu/.cpuinfo" "$root/proc/cpuinfo"
  mount --rbind /dev "$root/dev"
  unset CPUINFO CPUS
  exec chroot "$root" /usr/bin/env -i "$@"' arm64-run "$ROOT" "${keep[@]}" "$@"
