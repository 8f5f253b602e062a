#!/usr/bin/env bash
# fuzz.sh — run every fuzz target of the parsers of untrusted input.
#
#   scripts/fuzz.sh                a short run of each target: part of `make test`
#   FUZZTIME=10m scripts/fuzz.sh   the longer run, before a release
#
# The short run counts executions (-fuzztime=Nx), not seconds: a duration
# that ends while the fuzzer minimises a new input can fail with "context
# deadline exceeded" on a loaded machine, which is no finding.
#
# Targets: envelopes read from Redis (event), resume positions and SSE cursors
# (event), query parameters and client frames (wsconn), tokens (auth).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# package, target, executions in the short run (about 3-5 s each here)
targets=(
	"./internal/event FuzzDecode 100000x"
	"./internal/event FuzzParseSince 100000x"
	"./internal/event FuzzParseCursor 60000x"
	"./internal/wsconn FuzzParseChannels 20000x"
	"./internal/wsconn FuzzClientFrames 40x"
	"./internal/auth FuzzVerify 20000x"
)
for t in "${targets[@]}"; do
	read -r pkg name count <<<"$t"
	fuzztime=${FUZZTIME:-$count}
	echo "fuzz $name ($pkg) for $fuzztime"
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"
done
