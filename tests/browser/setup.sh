#!/usr/bin/env bash
# Installs what the browser test and the demo page need, on Debian bookworm as root; idempotent.
#   - Debian: firefox-esr, npm, python3-venv;
#   - Prosody 0.12 and 13 (13 unpacked in .cache/prosody13): the end-to-end suite's setup, reused;
#   - a virtualenv at .venv-browser with requirements.txt;
#   - strophe.js and converse.js (package.json, pinned by package-lock.json) in tests/browser/node_modules.
# `setup.sh page` installs only what serving the demo page needs (npm, the virtualenv, the npm packages).
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

	# The npm packages the pages load (strophe.js, converse.js), exactly as package-lock.json pins
	# them (versions and integrity hashes; the lock names no registry). A stamp says which lock
	# node_modules was installed from.
	if ! cmp -s "$here/package-lock.json" "$here/node_modules/.installed-lock.json"; then
		log "installing the npm packages of package-lock.json"
		(cd "$here" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) ||
			{ echo "npm ci failed" >&2; exit 1; }
		cp "$here/package-lock.json" "$here/node_modules/.installed-lock.json"
	fi
}

setup "$@"
