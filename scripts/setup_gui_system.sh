#!/usr/bin/env bash
# Install (with apt, only when missing) what napari needs to open windows headlessly:
# Xvfb, Mesa's software OpenGL and the xcb libraries Qt loads.
set -euo pipefail
pkgs=(xvfb xauth libgl1-mesa-dri libglx-mesa0 libegl1 libgl1 libxkbcommon-x11-0 libxcb-cursor0
      libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0
      libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-xkb1 libdbus-1-3 libfontconfig1)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "[setup] system packages for headless GUI tests are present"
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "[setup] apt-get install ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
