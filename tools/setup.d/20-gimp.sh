#!/usr/bin/env bash
# GIMP 3.0.4 for the GIMP plug-in tests (tests/test_gimp_*.py, marker `editor`).
#
# Debian 12 only ships GIMP 2.10, so the tests run GIMP 3 from Debian 13 (trixie) in a chroot,
# the recipe proven in ../shared/docs/reference/editors.md §4.2. The chroot lives OUTSIDE the clone
# (default /var/cache/dermis/gimp-trixie, or $DERMIS_GIMP_CHROOT) so every clone and every re-run
# reuses it. Idempotent: a finished chroot carries a stamp naming its packages and is left alone; a
# changed package list only installs what is new. Uses sudo when not root. About a minute from
# scratch on a fast mirror (debootstrap ~35 s, packages ~25 s), ~1.1 GB of disk.
#
# Packages: gimp + python3 (GIMP only *suggests* python3), and xvfb/xauth/xdotool for the one test
# that opens the plug-in's dialog in GIMP's GUI. grpcio/protobuf are NOT installed on purpose: the
# tests install the plug-in the way a user does (`dermis install-plugin gimp`, wheels vendored for
# the chroot's Python), so a broken vendoring step fails the tests instead of being hidden.
set -euo pipefail

ROOT="${DERMIS_GIMP_CHROOT:-/var/cache/dermis/gimp-trixie}"
MIRROR="${DERMIS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY="${DERMIS_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}"
PACKAGES=(gimp python3 xvfb xauth xdotool)
STAMP="$ROOT/.dermis-gimp-ready"
RECIPE="trixie ${PACKAGES[*]}"
LOG="$(dirname "$ROOT")/gimp-chroot-setup.log"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$RECIPE" ] && [ -x "$ROOT/usr/bin/gimp-console-3.0" ]; then
    echo "gimp: chroot ready at $ROOT ($(cat "$ROOT/.dermis-gimp-version" 2>/dev/null || echo '?'))"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "gimp: need root or sudo to build the chroot at $ROOT" >&2; exit 1; }
    SUDO="sudo"
fi
$SUDO mkdir -p "$(dirname "$ROOT")"
: | $SUDO tee "$LOG" >/dev/null

fail() {
    echo "gimp: $1; last lines of $LOG:" >&2
    $SUDO tail -n 25 "$LOG" >&2 || true
    exit 1
}

t0=$(date +%s)

# 1. The base system, built next to its final place and renamed when complete: an interrupted
#    debootstrap never leaves something that looks finished.
if [ ! -f "$ROOT/.dermis-base" ]; then
    command -v debootstrap >/dev/null 2>&1 || {
        echo "gimp: installing debootstrap"
        $SUDO apt-get update -qq
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
    }
    WORK="$ROOT.partial"
    for d in "$WORK" "$ROOT"; do
        [ -e "$d" ] || continue
        # never rm -rf through a mount (a bind-mounted /dev would take host files with it)
        if grep -q " $d/" /proc/self/mounts; then
            echo "gimp: $d has mounts inside (a test running?); unmount them first" >&2; exit 1
        fi
        echo "gimp: removing the unfinished chroot $d"
        $SUDO rm -rf --one-file-system "$d"
    done
    echo "gimp: debootstrap trixie into $ROOT (minbase, ~30 MB download)"
    $SUDO debootstrap --variant=minbase trixie "$WORK" "$MIRROR" >>"$LOG" 2>&1 || fail "debootstrap failed"
    $SUDO tee "$WORK/etc/apt/sources.list" >/dev/null <<EOF
deb $MIRROR trixie main
deb $MIRROR trixie-updates main
deb $SECURITY trixie-security main
EOF
    $SUDO touch "$WORK/.dermis-base"
    $SUDO mv "$WORK" "$ROOT"
fi

# 2. The packages (again on a changed list: apt only adds what is missing).
# proc and a tmpfs on /dev/shm for the package scripts; never host /dev (see the rm above)
mounted=()
for spec in "proc:proc:$ROOT/proc" "tmpfs:shm:$ROOT/dev/shm"; do
    IFS=: read -r fstype src target <<<"$spec"
    $SUDO mkdir -p "$target"
    if ! mountpoint -q "$target"; then
        $SUDO mount -t "$fstype" "$src" "$target"
        mounted+=("$target")
    fi
done
cleanup() { for m in "${mounted[@]}"; do $SUDO umount "$m" || $SUDO umount -l "$m"; done; }
trap cleanup EXIT

$SUDO cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
in_root() { $SUDO chroot "$ROOT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }
echo "gimp: apt-get install ${PACKAGES[*]} in the chroot (~125 MB download from scratch)"
in_root apt-get update -qq >>"$LOG" 2>&1 || fail "apt-get update failed in the chroot"
in_root apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >>"$LOG" 2>&1 \
    || fail "apt-get install ${PACKAGES[*]} failed in the chroot"
in_root apt-get clean
{ in_root dpkg-query -W -f='gimp ${Version}, ' gimp
  in_root python3 -c 'import platform; print("python " + platform.python_version())'; } \
    | $SUDO tee "$ROOT/.dermis-gimp-version" >/dev/null
test -x "$ROOT/usr/bin/gimp-console-3.0" || fail "gimp-console-3.0 is missing after the install"
echo "$RECIPE" | $SUDO tee "$STAMP" >/dev/null
echo "gimp: chroot ready at $ROOT ($(cat "$ROOT/.dermis-gimp-version")) in $(( $(date +%s) - t0 )) s"
