#!/usr/bin/env bash
# Prepares everything the end-to-end suite and `make demo` need, on a Debian bookworm machine as
# root. Idempotent: each step is skipped when its result is already there.
#   - Debian packages: Prosody 0.12, Lua 5.4, LuaDBI for SQLite and PostgreSQL, PostgreSQL,
#     python3-venv, and lua-unbound (Prosody recommends it; without it Prosody prints a banner
#     before every prosodyctl command's output: some runs hide it again, see README.md);
#   - Prosody 13 from bookworm-backports, unpacked into .cache/prosody13 (never installed, so it
#     does not replace the system's 0.12);
#   - a virtualenv at .venv with the pinned Python packages of requirements.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

DEBS=(prosody lua5.4 lua-unbound lua-dbi-sqlite3 lua-dbi-postgresql postgresql python3-venv)

log() { echo "[e2e setup] $*"; }

# Prints the packages of "$@" that nothing installed provides (virtual names such as
# lua5.4-socket count as installed when the package that provides them is).
missing_debs() {
	local installed package
	installed=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Provides}\n' 2>/dev/null |
		awk '$1 == "ii" { $1 = ""; print }' | sed 's/([^)]*)//g; s/,/ /g' | tr ' ' '\n' | sed 's/:any$//' | sort -u)
	for package in "$@"; do
		grep -qxF "$package" <<<"$installed" || echo "$package"
	done
}

apt_install() {
	local missing
	mapfile -t missing < <(missing_debs "$@")
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "Missing Debian packages: ${missing[*]}" >&2
		echo "Install them as root: apt-get install -y ${missing[*]}" >&2
		exit 1
	fi
	log "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" ||
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; }
}

# bookworm-backports, added from the same mirror that already serves bookworm (so the script names
# no host of its own, and follows whatever mirror the machine is set up with).
ensure_backports() {
	if apt-cache policy 2>/dev/null | grep -q ' bookworm-backports/main '; then
		return 0
	fi
	if [ "$(id -u)" -ne 0 ]; then
		echo "bookworm-backports is not in apt's sources; run this script as root once" >&2
		exit 1
	fi
	local mirror
	mirror=$(apt-cache policy 2>/dev/null | awk '$3 == "bookworm/main" { print $2; exit }')
	if [ -z "$mirror" ]; then
		apt-get update -q
		mirror=$(apt-cache policy 2>/dev/null | awk '$3 == "bookworm/main" { print $2; exit }')
	fi
	[ -n "$mirror" ] || { echo "cannot find the mirror that serves bookworm in apt's sources" >&2; exit 1; }
	log "adding bookworm-backports from $mirror"
	cat >/etc/apt/sources.list.d/bookworm-backports.sources <<SOURCES
Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
	apt-get update -q
}

# Prosody 13: the backports package unpacked into a private root. Its launchers are pointed at that
# root and run with lua5.4; its runtime dependencies are those of 0.12 (installed above) plus any
# the package names that are missing, installed from apt.
ensure_prosody13() {
	local dest="$root/.cache/prosody13"
	local version
	version=$(apt-cache policy prosody | awk '/^ +(\*\*\* )?13\./ { print ($1 == "***" ? $2 : $1); exit }')
	[ -n "$version" ] || version=$(apt-cache madison prosody | awk -F' *\\| *' '$2 ~ /^13\./ { print $2; exit }')
	[ -n "$version" ] || { echo "no Prosody 13 in apt's sources (bookworm-backports)" >&2; exit 1; }
	if [ -f "$dest/.version" ] && [ "$(cat "$dest/.version")" = "$version" ] && [ -x "$dest/root/usr/bin/prosody" ]; then
		return 0
	fi
	log "unpacking Prosody $version into $dest"
	rm -rf "$dest" && mkdir -p "$dest/deb"
	# apt's download user must be able to write there, or apt warns and downloads as root.
	chmod 0777 "$dest/deb"
	(cd "$dest/deb" && apt-get download -q "prosody=$version")
	chmod 0755 "$dest/deb"
	dpkg -x "$dest"/deb/prosody_*.deb "$dest/root"
	# Its dependencies, without the alternatives already satisfied by something installed.
	local deps
	deps=$(dpkg-deb -f "$dest"/deb/prosody_*.deb Depends | tr ',' '\n' | sed 's/([^)]*)//g; s/^ *//; s/ *$//' |
		while read -r alternatives; do
			[ -z "$alternatives" ] && continue
			local satisfied="" first=""
			for alternative in ${alternatives//|/ }; do
				alternative=${alternative%%:any}
				[ -z "$first" ] && first=$alternative
				if [ -z "$(missing_debs "$alternative")" ]; then satisfied=1; break; fi
			done
			[ -n "$satisfied" ] || echo "$first"
		done)
	# shellcheck disable=SC2086
	[ -z "$deps" ] || apt_install $deps
	local bin
	for bin in prosody prosodyctl; do
		sed -i \
			-e "s|^CFG_SOURCEDIR=.*|CFG_SOURCEDIR='$dest/root/usr/lib/prosody';|" \
			-e "s|^CFG_PLUGINDIR=.*|CFG_PLUGINDIR='$dest/root/usr/lib/prosody/modules/';|" \
			"$dest/root/usr/bin/$bin"
	done
	echo "$version" >"$dest/.version"
}

ensure_venv() {
	local venv="$root/.venv"
	# Debian's own Python, so the suite runs the same on a fresh machine as here.
	local python=/usr/bin/python3
	if [ -x "$venv/bin/python" ] && cmp -s "$here/requirements.txt" "$venv/e2e-requirements.txt"; then
		return 0
	fi
	log "creating $venv"
	"$python" -m venv "$venv"
	"$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
	cp "$here/requirements.txt" "$venv/e2e-requirements.txt"
}

apt_install "${DEBS[@]}"
ensure_backports
ensure_prosody13
ensure_venv
log "ready: Prosody $(dpkg-query -W -f='${Version}' prosody) and $(cat "$root/.cache/prosody13/.version")"
