#!/usr/bin/env bash
# demo.sh — run a local pgrelay demo (what `make demo` runs).
#
# Builds bin/relay and bin/edge, finds or starts PostgreSQL and Redis
# (scripts/services.sh), then runs two relays (one becomes leader, the other
# standby) and two edges serving the demo page. Ctrl-C stops everything.
#
# Environment:
#   RELAY_CHANNELS       channels the relays LISTEN on (default: data)
#   PGRELAY_THROWAWAY=1  always start throwaway PostgreSQL/Redis servers
#   PGRELAY_DATABASE_URL / PGRELAY_REDIS_URL (and the other names services.sh
#                        knows) to use specific servers
#   PGRELAY_DEMO_KEEP=1  keep the temp dir (logs) on exit
#   RELAY_LOG_FORMAT / EDGE_LOG_FORMAT  log format (default here: text)
#   EDGE_DRAIN_TIMEOUT   edges' shutdown drain window (default here: 2s)
set -euo pipefail
shopt -s inherit_errexit

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

say() { printf 'demo: %s\n' "$*" >&2 || true; }

channels=${RELAY_CHANNELS:-data}
first_channel=${channels%%,*}
first_channel=${first_channel// /}

pids=()
names=()
logs=()
tmp=""
services_up=0
cleaned=0

cleanup() {
	local rc=$?
	[ "$cleaned" = 1 ] && return
	cleaned=1
	# Ignore SIGPIPE: if our output went through a pipe (make demo | tee) that
	# Ctrl-C already closed, a message must not kill the cleanup.
	trap '' INT TERM PIPE
	set +e
	if [ "${#pids[@]}" -gt 0 ]; then
		say "stopping ${names[*]}"
		local p i
		for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
		for i in $(seq 1 80); do
			local alive=0
			for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
			[ "$alive" = 0 ] && break
			sleep 0.1
		done
		for p in "${pids[@]}"; do
			if kill -0 "$p" 2>/dev/null; then
				say "pid $p did not stop within 8 s of SIGTERM; sending SIGKILL"
				kill -KILL "$p" 2>/dev/null
			fi
		done
		for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	fi
	if [ "$services_up" = 1 ]; then
		bash "$here/services.sh" down "$tmp/services"
	fi
	if [ -n "$tmp" ] && [ -d "$tmp" ]; then
		if [ "${PGRELAY_DEMO_KEEP:-0}" = 1 ]; then
			say "kept $tmp"
		else
			rm -rf "$tmp"
		fi
	fi
	say "stopped"
	exit "$rc"
}
trap cleanup EXIT
# Once the demo is up, Ctrl-C / SIGTERM is the normal way to stop it: exit 0.
running=0
on_signal() {
	if [ "$running" = 1 ]; then exit 0; fi
	exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM HUP

port_busy() { (: >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

used_ports=" "
# pick_port PREFERRED — print PREFERRED if free, else some free port; never the same twice.
pick_port() {
	local p=$1 i
	if [[ $used_ports != *" $p "* ]] && ! port_busy "$p"; then
		used_ports+="$p "
		echo "$p"
		return 0
	fi
	for i in $(seq 1 200); do
		p=$((20000 + RANDOM % 12000))
		if [[ $used_ports != *" $p "* ]] && ! port_busy "$p"; then
			used_ports+="$p "
			echo "$p"
			return 0
		fi
	done
	say "no free port found"
	return 1
}

setsid=$(command -v setsid || true)

# start NAME LOG ENV=VAL... -- CMD...
start() {
	local name=$1 logf=$2
	shift 2
	local envs=()
	while [ "$1" != -- ]; do
		envs+=("$1")
		shift
	done
	shift
	# Each process gets its own session (setsid), so a Ctrl-C in the terminal
	# reaches only this script, which then stops them in order.
	if [ -n "$setsid" ]; then
		"$setsid" env "${envs[@]}" "$@" >"$logf" 2>&1 </dev/null &
	else
		env "${envs[@]}" "$@" >"$logf" 2>&1 </dev/null &
	fi
	pids+=("$!")
	names+=("$name")
	logs+=("$logf")
	say "started $name (pid $!, log $logf)"
}

# idx_of NAME — index of NAME in names.
idx_of() {
	local i
	for i in "${!names[@]}"; do
		[ "${names[$i]}" = "$1" ] && { echo "$i"; return 0; }
	done
	return 1
}

show_log() { # show_log INDEX
	say "last lines of ${logs[$1]}:"
	tail -n 30 "${logs[$1]}" >&2 || true
}

# wait_http NAME URL — wait until URL answers 2xx (or the process dies / 20 s pass).
wait_http() {
	local name=$1 url=$2 i idx
	idx=$(idx_of "$name")
	for i in $(seq 1 100); do
		if curl -fsS --max-time 2 -o /dev/null "$url" 2>/dev/null; then
			return 0
		fi
		if ! kill -0 "${pids[$idx]}" 2>/dev/null; then
			say "$name exited before it was ready ($url)"
			show_log "$idx"
			return 1
		fi
		sleep 0.2
	done
	say "$name did not answer $url within 20 s"
	show_log "$idx"
	return 1
}

# ------------------------------------------------------------------ build
say "building bin/relay and bin/edge"
mkdir -p bin
go build -o bin/relay ./cmd/relay
go build -o bin/edge ./cmd/edge

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pgrelay-demo.XXXXXX")

# ------------------------------------------------------------------ services
services_up=1
svc_env=$(bash "$here/services.sh" up "$tmp/services")
eval "$svc_env"
db_url=$PGRELAY_DATABASE_URL
redis_url=$PGRELAY_REDIS_URL

# ------------------------------------------------------------------ processes
edge1_port=$(pick_port 8080)
edge2_port=$(pick_port 8090)
relay1_port=$(pick_port 8081)
relay2_port=$(pick_port 8091)

start relay-1 "$tmp/relay-1.log" RELAY_DATABASE_URL="$db_url" RELAY_REDIS_URL="$redis_url" \
	RELAY_HTTP_ADDR="127.0.0.1:$relay1_port" RELAY_CHANNELS="$channels" RELAY_LOG_FORMAT="${RELAY_LOG_FORMAT:-text}" -- ./bin/relay
# Give relay-1 a head start so it is usually the leader.
sleep 0.5
start relay-2 "$tmp/relay-2.log" RELAY_DATABASE_URL="$db_url" RELAY_REDIS_URL="$redis_url" \
	RELAY_HTTP_ADDR="127.0.0.1:$relay2_port" RELAY_CHANNELS="$channels" RELAY_LOG_FORMAT="${RELAY_LOG_FORMAT:-text}" -- ./bin/relay
start edge-1 "$tmp/edge-1.log" EDGE_REDIS_URL="$redis_url" EDGE_HTTP_ADDR="127.0.0.1:$edge1_port" \
	EDGE_LOG_FORMAT="${EDGE_LOG_FORMAT:-text}" EDGE_DRAIN_TIMEOUT="${EDGE_DRAIN_TIMEOUT:-2s}" -- ./bin/edge
start edge-2 "$tmp/edge-2.log" EDGE_REDIS_URL="$redis_url" EDGE_HTTP_ADDR="127.0.0.1:$edge2_port" \
	EDGE_LOG_FORMAT="${EDGE_LOG_FORMAT:-text}" EDGE_DRAIN_TIMEOUT="${EDGE_DRAIN_TIMEOUT:-2s}" -- ./bin/edge

wait_http relay-1 "http://127.0.0.1:$relay1_port/healthz"
wait_http relay-2 "http://127.0.0.1:$relay2_port/healthz"
wait_http edge-1 "http://127.0.0.1:$edge1_port/readyz"
wait_http edge-2 "http://127.0.0.1:$edge2_port/readyz"

# role NAME PORT — print the role from the relay's /readyz body (leader/standby/unknown).
role() {
	local body
	body=$(curl -sS --max-time 2 "http://127.0.0.1:$2/readyz" 2>/dev/null) || true
	if grep -qiw standby <<<"$body"; then
		echo standby
	elif grep -qiw leader <<<"$body"; then
		echo leader
	else
		echo unknown
	fi
}

leader=""
for i in $(seq 1 100); do
	r1=$(role relay-1 "$relay1_port")
	r2=$(role relay-2 "$relay2_port")
	if [ "$r1" = leader ] || [ "$r2" = leader ]; then
		leader=yes
		break
	fi
	for n in relay-1 relay-2; do
		idx=$(idx_of "$n")
		if ! kill -0 "${pids[$idx]}" 2>/dev/null; then
			say "$n exited while waiting for a leader"
			show_log "$idx"
			exit 1
		fi
	done
	sleep 0.2
done
if [ -z "$leader" ]; then
	say "no relay became leader within 20 s (relay-1: $r1, relay-2: $r2)"
	show_log "$(idx_of relay-1)"
	show_log "$(idx_of relay-2)"
	exit 1
fi

# ------------------------------------------------------------------ banner
cat <<EOF

==================================================================
 pgrelay demo is running

 Open in a browser (two edges, same stream):
   http://127.0.0.1:$edge1_port/
   http://127.0.0.1:$edge2_port/

 Relays (LISTEN ${channels}):
   relay-1  pid ${pids[0]}  http://127.0.0.1:$relay1_port/readyz   $r1
   relay-2  pid ${pids[1]}  http://127.0.0.1:$relay2_port/readyz   $r2
   (kill the leader's pid: the standby takes over and the pages keep updating)

 Send a notification:
   psql '$db_url' -c "NOTIFY ${first_channel}, 'green'"

 Redis: $redis_url
 Logs:  $tmp/{relay-1,relay-2,edge-1,edge-2}.log

 Ctrl-C to stop.
==================================================================

EOF

# ------------------------------------------------------------------ wait
running=1
# `wait -n` returns when any child exits; a trapped signal interrupts it and
# runs the trap (which exits via cleanup).
# A relay may be killed on purpose to watch the standby take over: the demo
# goes on while one relay and both edges live.
gone=()
while :; do
	live=()
	for i in "${!pids[@]}"; do
		[[ " ${gone[*]} " == *" $i "* ]] || live+=("${pids[$i]}")
	done
	wait -n "${live[@]}" 2>/dev/null || true
	relays_alive=0
	for i in 0 1; do kill -0 "${pids[$i]}" 2>/dev/null && relays_alive=$((relays_alive + 1)); done
	for i in "${!pids[@]}"; do
		if ! kill -0 "${pids[$i]}" 2>/dev/null && [[ " ${gone[*]} " != *" $i "* ]]; then
			if [ "$i" -lt 2 ] && [ "$relays_alive" -gt 0 ]; then
				say "${names[$i]} (pid ${pids[$i]}) exited; the other relay carries on"
				gone+=("$i")
				continue
			fi
			say "${names[$i]} (pid ${pids[$i]}) exited unexpectedly"
			show_log "$i"
			exit 1
		fi
	done
done
