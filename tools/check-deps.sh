#!/usr/bin/env bash
# Offline check of what the shipped library is built from (the advisory database cannot be
# fetched here): no RSA implementation (RUSTSEC-2023-0071 has no fix; ES256 needs none), and no
# crate in two versions unless tools/duplicate-crates.txt says why.
set -euo pipefail
cd "$(dirname "$0")/.."
allow=tools/duplicate-crates.txt
cargo=${CARGO:-cargo}
tree() { $cargo tree --locked --offline -e normal "$@"; }

# rsa among the normal dependencies? ("did not match" means it is not even in Cargo.lock.)
if ! rsa=$(tree -i rsa 2>/tmp/check-deps.$$); then
	if ! grep -q "did not match any packages" /tmp/check-deps.$$; then
		cat /tmp/check-deps.$$ >&2
		rm -f /tmp/check-deps.$$
		echo "check-deps: cargo tree failed" >&2
		exit 1
	fi
	rsa=
fi
rm -f /tmp/check-deps.$$
if [ -n "$rsa" ]; then
	echo "check-deps: the shipped library depends on rsa:" >&2
	echo "$rsa" >&2
	exit 1
fi

# Crate names that appear in more than one version among the normal dependencies.
duplicates=$(tree -d --depth 0 --prefix none | awk 'NF >= 2 { print $1, $2 }' | sort -u)
families=$(echo "$duplicates" | awk 'NF { print $1 }' | sort -u)
status=0
for family in $families; do
	reason=$(awk -v name="$family" '$1 == name { $1 = ""; sub(/^ +/, ""); print }' "$allow")
	if [ -z "$reason" ]; then
		echo "check-deps: $family is in the tree twice and not in $allow (with a reason):" >&2
		echo "$duplicates" | awk -v name="$family" '$1 == name { print "  " $0 }' >&2
		echo "  (cargo tree -e normal -i $family@VERSION shows who uses each)" >&2
		status=1
	else
		echo "check-deps: $family twice, allowed: $reason"
	fi
done
if [ $status -eq 0 ]; then
	echo "check-deps: no rsa; $(echo "$families" | grep -c . || true) duplicate crate families, each allowed"
fi
exit $status
