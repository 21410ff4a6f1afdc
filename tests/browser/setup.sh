#!/usr/bin/env bash
# Installs what the browser test and the demo page need, on Debian bookworm as root; idempotent.
#   - Debian: firefox-esr, npm, python3-venv;
#   - Prosody 0.12 and 13 (13 unpacked in .cache/prosody13): the end-to-end suite's setup, reused;
#   - a virtualenv at .venv-browser with requirements.txt;
#   - strophe.js (package.json) in tests/browser/node_modules, with no lock file.
# `setup.sh page` installs only what serving the demo page needs (npm, the virtualenv, strophe.js).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv="$root/.venv-browser"

log() { echo "[browser test] $*"; }

apt_install() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "Missing Debian packages: $*; install them as root: apt-get install -y $*" >&2
		exit 1
	fi
	log "installing $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" ||
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"; } ||
		exit 1
}

setup() {
	if [ "${1:-}" != page ]; then
		command -v firefox-esr >/dev/null || apt_install firefox-esr
		# Prosody 0.12, Prosody 13 unpacked in .cache/prosody13: the end-to-end suite's setup.
		"$root/tests/e2e/setup.sh" >/dev/null || { echo "tests/e2e/setup.sh failed" >&2; exit 1; }
	fi
	command -v npm >/dev/null || apt_install npm
	if ! /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then
		apt_install python3-venv
	fi

	if ! { [ -x "$venv/bin/python" ] && cmp -s "$here/requirements.txt" "$venv/browser-requirements.txt"; }; then
		log "creating $venv"
		if ! { /usr/bin/python3 -m venv "$venv" &&
			"$venv/bin/pip" install -q --disable-pip-version-check --use-pep517 -r "$here/requirements.txt"; }; then
			echo "cannot set up $venv" >&2
			exit 1
		fi
		cp "$here/requirements.txt" "$venv/browser-requirements.txt"
	fi

	# strophe.js at the version package.json pins; no lock file (it would name the registry).
	local wanted have
	wanted=$(sed -n 's/.*"strophe.js": *"\([^"]*\)".*/\1/p' "$here/package.json")
	have=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$here/node_modules/strophe.js/package.json" 2>/dev/null | head -1)
	if [ "$have" != "$wanted" ]; then
		log "installing strophe.js $wanted"
		(cd "$here" && npm install --no-package-lock --no-audit --no-fund --loglevel=error) ||
			{ echo "npm install failed" >&2; exit 1; }
	fi
}

setup "$@"
