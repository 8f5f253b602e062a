#!/usr/bin/env bash
# fuzz.sh — run every fuzz target of the parsers of untrusted input.
#
#   scripts/fuzz.sh          each target for FUZZTIME (default 5s): part of `make test`
#   FUZZTIME=10m scripts/fuzz.sh   the longer run, before a release
#
# Targets: envelopes read from Redis (event), resume positions and SSE cursors
# (event), query parameters and client frames (wsconn), tokens (auth).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fuzztime=${FUZZTIME:-5s}
targets=(
	"./internal/event FuzzDecode"
	"./internal/event FuzzParseSince"
	"./internal/event FuzzParseCursor"
	"./internal/wsconn FuzzParseChannels"
	"./internal/wsconn FuzzClientFrames"
	"./internal/auth FuzzVerify"
)
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "fuzz $name ($pkg) for $fuzztime"
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"
done
