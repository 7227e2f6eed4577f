#!/usr/bin/env bash
# Builds the Debian package: the release binary, its manual pages (generated from the same
# definitions as --help), then `cargo deb`. Needs cargo-deb (`cargo install cargo-deb --locked`).
# Prints the path of the .deb on its last line.
#
#   bash packaging/build-deb.sh
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}

cargo build --release --locked -p quickfreeze-node --bins
rm -rf "$target/release/man"
"$target/release/quickfreeze-man" "$target/release/man"
cargo deb -p quickfreeze-node --no-build --locked
ls -t "$target"/debian/quickfreeze-node_*.deb | head -1
