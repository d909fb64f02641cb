#!/usr/bin/env bash
# Real Krita 5 + Xvfb from Debian for the Krita plugin tests (tests/test_krita_*.py, marker `editor`).
# Idempotent: does nothing when both are already there. Uses sudo when not root.
# Krita embeds the system Python (Debian 12: 3.11), so python3-pyqt5 comes with it; grpcio/protobuf
# are NOT installed system-wide on purpose: the tests vendor wheels into the plugin, as a user's
# install does, so a missing vendoring step fails the tests.
set -euo pipefail

# krita only *recommends* PyQt5 and sip, without which its Python (and every plugin) is dead; xauth
# is what xvfb-run uses to hand the display cookie to Krita.
PACKAGES=(krita python3-pyqt5 python3-sip xvfb xauth)
need=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -eq 0 ]; then
    echo "krita: already installed ($(dpkg-query -W -f='${Version}' krita 2>/dev/null || echo '?'))"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "krita: need root or sudo to install ${need[*]}" >&2; exit 1; }
    SUDO="sudo"
fi

echo "krita: installing ${need[*]} (about 250 MB from Debian)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
command -v kritarunner >/dev/null && command -v xvfb-run >/dev/null && test -d /usr/lib/python3/dist-packages/PyQt5
echo "krita: installed $(dpkg-query -W -f='${Version}' krita)"
