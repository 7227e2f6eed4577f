#!/usr/bin/env bash
# Checks the systemd unit the way it ships: unpacks the Debian package into a temporary root,
# points the unit's ExecStart at the unpacked binary (systemd-analyze insists that it exists),
# then runs `systemd-analyze verify` (any message fails: systemd only warns about unknown keys
# and bad values) and `systemd-analyze security --offline` with an exposure threshold.
#
#   bash packaging/verify-unit.sh target/debian/quickfreeze-node_*.deb
set -euo pipefail

deb=${1:?usage: packaging/verify-unit.sh PACKAGE.deb}
# Highest exposure accepted by `systemd-analyze security` (0 = locked down, 100 = none).
max_exposure=${MAX_EXPOSURE:-25}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$deb" "$work/root"
unit_source="$work/root/lib/systemd/system/quickfreeze@.service"
binary="$work/root/usr/bin/quickfreeze"
[ -f "$unit_source" ] || { echo "FAIL: $deb holds no lib/systemd/system/quickfreeze@.service" >&2; exit 1; }
[ -x "$binary" ] || { echo "FAIL: $deb holds no executable usr/bin/quickfreeze" >&2; exit 1; }
"$binary" --version

mkdir "$work/units"
unit="$work/units/quickfreeze@.service"
sed "s#/usr/bin/quickfreeze#$binary#g" "$unit_source" > "$unit"
# Manual pages are checked in the package listing, not through man(1) in the temporary root.
if ! output=$(cd "$work/units" && systemd-analyze verify --man=no "$unit" 2>&1) || [ -n "$output" ]; then
    echo "FAIL: systemd-analyze verify:" >&2
    echo "$output" >&2
    exit 1
fi
echo "OK: systemd-analyze verify quickfreeze@.service"
(cd "$work/units" && systemd-analyze security --offline=yes --threshold="$max_exposure" "$unit") | tail -1

# Every command's manual page is in the package.
listing=$(dpkg-deb -c "$deb")
for page in quickfreeze.1 quickfreeze-run.1 quickfreeze-doctor.1; do
    grep -q "usr/share/man/man1/$page" <<<"$listing" || { echo "FAIL: $deb lacks the manual page $page" >&2; exit 1; }
done
echo "OK: manual pages present"
