#!/usr/bin/env bash
# local.sh — run cmd/bench against a relay and edge(s) started here, from
# this checkout, on free loopback ports; stop them afterwards.
#
#   bash cmd/bench/local.sh -clients 1000 -rate 10 -duration 20s
#
# Arguments go to bench (-h lists them); -edges, -channel, -db and -edge-pid
# are filled in, and so are -redis and -redis-prefix (the relay's, so that
# bench reports the relay's own latency) unless -redis is given. It uses the
# PostgreSQL and Redis that are running (it starts none):
# PGRELAY_DATABASE_URL (default postgres://127.0.0.1:5432/test?sslmode=disable)
# and PGRELAY_REDIS_URL (default redis://127.0.0.1:6379/0). The relay LISTENs
# on a fresh channel under a fresh prefix, so runs do not see each other.
#
# Environment:
#   BENCH_EDGES=N       edges to start (default 1); clients are spread over them
#   BENCH_QUIET_LOAD=L  before running, wait (up to 5 min) for the 1-minute
#                       load average to drop below L, e.g. 0.5
#   BENCH_BIN=DIR       where to build relay, edge and bench (default: a temp dir)
#   BENCH_NO_BUILD=1    use the binaries already in BENCH_BIN
#   BENCH_KEEP=1        keep the temp dir with the relay and edge logs
#   EDGE_* / RELAY_*    passed on to the edge / relay, e.g. EDGE_QUEUE_SIZE=64,
#                       EDGE_PPROF_ADDR=127.0.0.1:6060 (where the edge has it)
# Each edge runs under `prlimit --nofile=20000:20000` when prlimit exists,
# with EDGE_MAX_CONNECTIONS=20000 unless set.
set -euo pipefail
shopt -s inherit_errexit

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

say() { printf 'local.sh: %s\n' "$*" >&2; }

db=${PGRELAY_DATABASE_URL:-postgres://127.0.0.1:5432/test?sslmode=disable}
redis=${PGRELAY_REDIS_URL:-redis://127.0.0.1:6379/0}
nedges=${BENCH_EDGES:-1}
tag=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
channel=bench_$tag
prefix=pgrelay_bench_$tag

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pgrelay-bench.XXXXXX")
bin=${BENCH_BIN:-$tmp/bin}
pids=()
cleanup() {
	local rc=$? p
	set +e
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	if [ "${BENCH_KEEP:-0}" = 1 ]; then say "kept $tmp"; else rm -rf "$tmp"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "${BENCH_NO_BUILD:-0}" = 1 ] && [ -x "$bin/relay" ] && [ -x "$bin/edge" ] && [ -x "$bin/bench" ]; then
	say "using the binaries in $bin"
else
	say "building relay, edge and bench into $bin"
	mkdir -p "$bin"
	go build -o "$bin/relay" ./cmd/relay
	go build -o "$bin/edge" ./cmd/edge
	go build -o "$bin/bench" ./cmd/bench
fi

port_busy() { (: >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
used=" "
free_port() {
	local p i
	for i in $(seq 1 500); do
		p=$((20000 + RANDOM % 12000))
		if [[ $used != *" $p "* ]] && ! port_busy "$p"; then
			used+="$p "
			echo "$p"
			return 0
		fi
	done
	say "no free port"
	return 1
}

wait_ready() { # wait_ready NAME URL PID
	local i
	for i in $(seq 1 100); do
		if curl -fsS --max-time 2 -o /dev/null "$2" 2>/dev/null; then return 0; fi
		if ! kill -0 "$3" 2>/dev/null; then
			say "$1 exited; its log:"
			cat "$tmp/$1.log" >&2
			return 1
		fi
		sleep 0.1
	done
	say "$1 not ready at $2 after 10 s"
	return 1
}

limit=()
if command -v prlimit >/dev/null; then limit=(prlimit --nofile=20000:20000); fi

relay_port=$(free_port)
RELAY_DATABASE_URL=$db RELAY_REDIS_URL=$redis RELAY_PREFIX=$prefix RELAY_CHANNELS=$channel \
	RELAY_HTTP_ADDR=127.0.0.1:$relay_port RELAY_LOG_LEVEL=${RELAY_LOG_LEVEL:-warn} \
	"$bin/relay" >"$tmp/relay.log" 2>&1 </dev/null &
pids+=("$!")
relay_pid=$!
wait_ready relay "http://127.0.0.1:$relay_port/readyz" "$relay_pid" # ready = leading

edges=()
edge_pids=()
for i in $(seq 1 "$nedges"); do
	port=$(free_port)
	EDGE_REDIS_URL=$redis EDGE_PREFIX=$prefix EDGE_HTTP_ADDR=127.0.0.1:$port \
		EDGE_LOG_LEVEL=${EDGE_LOG_LEVEL:-warn} EDGE_MAX_CONNECTIONS=${EDGE_MAX_CONNECTIONS:-20000} \
		"${limit[@]}" "$bin/edge" >"$tmp/edge-$i.log" 2>&1 </dev/null &
	pids+=("$!")
	edge_pids+=("$!")
	edges+=("http://127.0.0.1:$port")
	wait_ready "edge-$i" "http://127.0.0.1:$port/readyz" "$!"
done
say "relay pid $relay_pid on :$relay_port; edge(s) ${edges[*]} pid(s) ${edge_pids[*]}; channel $channel"

if [ -n "${BENCH_QUIET_LOAD:-}" ]; then
	for i in $(seq 1 150); do
		load=$(cut -d' ' -f1 /proc/loadavg)
		if awk -v l="$load" -v m="$BENCH_QUIET_LOAD" 'BEGIN { exit !(l < m) }'; then break; fi
		[ "$i" = 1 ] && say "waiting for the load ($load) to drop below $BENCH_QUIET_LOAD"
		sleep 2
	done
	say "load $(cut -d' ' -f1-3 /proc/loadavg)"
fi

ids=$(IFS=,; echo "${edge_pids[*]}")
urls=$(IFS=,; echo "${edges[*]}")
extra=(-redis "$redis" -redis-prefix "$prefix")
for a in "$@"; do
	case $a in -redis | --redis | -redis=* | --redis=*) extra=() ;; esac
done
"$bin/bench" -edges "$urls" -channel "$channel" -db "$db" -edge-pid "$ids" "${extra[@]}" "$@"
