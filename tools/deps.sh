#!/usr/bin/env bash
# Installs the Debian packages a target needs, when they are missing. As root it installs them;
# otherwise it prints the exact command and fails, so nothing half-works.
# Usage: tools/deps.sh PACKAGE...
set -euo pipefail

missing=()
for package in "$@"; do
	if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$package")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "Missing Debian packages: ${missing[*]}" >&2
	echo "Install them with:  sudo apt-get install -y ${missing[*]}" >&2
	exit 1
fi

stamp=/var/lib/apt/periodic/mod_web_push-update-stamp
if [ ! -e "$stamp" ] || [ -n "$(find "$stamp" -mmin +360 2>/dev/null)" ]; then
	apt-get update -q
	mkdir -p "$(dirname "$stamp")" && touch "$stamp"
fi
echo "Installing ${missing[*]}"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
