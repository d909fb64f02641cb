#!/usr/bin/env bash
# GIMP 3.0.4 for the GIMP plug-in tests (tests/test_gimp_*.py, marker `editor`).
#
# Debian 12 only ships GIMP 2.10, so the tests run GIMP 3 from Debian 13 (trixie) in a chroot,
# the recipe proven in ../shared/docs/reference/editors.md §4.2. The chroot lives OUTSIDE the clone
# (default /var/cache/dermis/gimp-trixie, or $DERMIS_GIMP_CHROOT) so every clone and every re-run
# reuses it. Idempotent: a finished chroot carries a stamp and is left alone. Uses sudo when not
# root. Takes about a minute on a fast mirror (debootstrap ~35 s, gimp ~25 s), ~1 GB of disk.
#
# Only `gimp python3` go in: grpcio/protobuf are NOT installed in the chroot on purpose. The tests
# install the plug-in the way a user does (`dermis install-plugin gimp`, wheels vendored for the
# chroot's Python), so a broken vendoring step fails the tests instead of being hidden.
set -euo pipefail

ROOT="${DERMIS_GIMP_CHROOT:-/var/cache/dermis/gimp-trixie}"
MIRROR="${DERMIS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY="${DERMIS_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}"
PACKAGES=(gimp python3)
STAMP="$ROOT/.dermis-gimp-ready"
# bump when PACKAGES or the recipe changes, so old chroots get rebuilt
RECIPE="1 ${PACKAGES[*]}"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$RECIPE" ] && [ -x "$ROOT/usr/bin/gimp-console-3.0" ]; then
    echo "gimp: chroot ready at $ROOT ($(cat "$ROOT/.dermis-gimp-version" 2>/dev/null || echo '?'))"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "gimp: need root or sudo to build the chroot at $ROOT" >&2; exit 1; }
    SUDO="sudo"
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    echo "gimp: installing debootstrap"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

# Build next to the final place and rename at the end: an interrupted run never leaves a
# half-built chroot that looks finished.
WORK="$ROOT.partial"

unmount_all() {
    # deepest first; only what this script mounted (proc and a tmpfs on /dev/shm, never host /dev)
    for m in "$WORK/dev/shm" "$WORK/proc"; do
        if mountpoint -q "$m" 2>/dev/null; then $SUDO umount "$m" || $SUDO umount -l "$m"; fi
    done
}
trap unmount_all EXIT

if [ -e "$WORK" ]; then
    echo "gimp: removing an unfinished chroot at $WORK"
    unmount_all
    # refuse to rm -rf anything that is still a mount point inside (host files behind a bind mount)
    if grep -q " $WORK/" /proc/self/mounts; then
        echo "gimp: $WORK still has mounts inside; unmount them first" >&2; exit 1
    fi
    $SUDO rm -rf "$WORK"
fi
$SUDO mkdir -p "$(dirname "$ROOT")"

t0=$(date +%s)
echo "gimp: debootstrap trixie into $WORK (minbase, ~30 MB download)"
$SUDO debootstrap --variant=minbase trixie "$WORK" "$MIRROR" >"$(dirname "$ROOT")/debootstrap.log" 2>&1 || {
    echo "gimp: debootstrap failed; last lines of $(dirname "$ROOT")/debootstrap.log:" >&2
    tail -n 20 "$(dirname "$ROOT")/debootstrap.log" >&2; exit 1; }

$SUDO tee "$WORK/etc/apt/sources.list" >/dev/null <<EOF
deb $MIRROR trixie main
deb $MIRROR trixie-updates main
deb $SECURITY trixie-security main
EOF
$SUDO cp /etc/resolv.conf "$WORK/etc/resolv.conf"
$SUDO mount -t proc proc "$WORK/proc"
$SUDO mkdir -p "$WORK/dev/shm"
$SUDO mount -t tmpfs -o mode=1777 shm "$WORK/dev/shm"

echo "gimp: apt-get install ${PACKAGES[*]} in the chroot (~120 MB download)"
$SUDO chroot "$WORK" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 apt-get update -qq
$SUDO chroot "$WORK" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
$SUDO chroot "$WORK" apt-get clean
$SUDO chroot "$WORK" env -i PATH=/usr/bin:/bin dpkg-query -W -f='gimp ${Version}, ' gimp \
    | $SUDO tee "$WORK/.dermis-gimp-version" >/dev/null
$SUDO chroot "$WORK" /usr/bin/python3 -c 'import platform; print("python " + platform.python_version())' \
    | $SUDO tee -a "$WORK/.dermis-gimp-version" >/dev/null
test -x "$WORK/usr/bin/gimp-console-3.0"

unmount_all
trap - EXIT
if [ -e "$ROOT" ]; then
    if grep -q " $ROOT/" /proc/self/mounts; then
        echo "gimp: the old chroot $ROOT is still mounted (a test running?); unmount it first" >&2; exit 1
    fi
    $SUDO rm -rf "$ROOT"
fi
$SUDO mv "$WORK" "$ROOT"
echo "$RECIPE" | $SUDO tee "$STAMP" >/dev/null
echo "gimp: chroot ready at $ROOT ($(cat "$ROOT/.dermis-gimp-version")) in $(( $(date +%s) - t0 )) s"
