#!/usr/bin/env bash
# Writes the golden vectors of proto/tests/golden/*.hex as binary seed files into
# fuzz/corpus/<target>/ (git-ignored). Re-run after re-blessing the vectors.
set -euo pipefail
cd "$(dirname "$0")"
golden=../proto/tests/golden
seed() { # target, golden names...
  local target=$1; shift
  mkdir -p "corpus/$target"
  for name in "$@"; do
    xxd -r -p "$golden/$name.hex" > "corpus/$target/golden-$name"
  done
}
envelopes=(envelope-preservation envelope-traffic-data envelope-emergency envelope-status envelope-free-text)
payloads=(payload-preservation payload-traffic-data payload-emergency payload-status payload-free-text)
seed envelope_open "${envelopes[@]}"
seed receipt_verify receipt-delivered receipt-custody
seed batch_decode batch
seed payload_decode "${payloads[@]}"
seed signed_roster signed-roster
seed core_request batch
for target in corpus/*; do echo "$target: $(ls "$target" | wc -l) files"; done
