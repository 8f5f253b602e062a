#!/usr/bin/env bash
# services.sh — find (or start throwaway) PostgreSQL and Redis servers for pgrelay.
#
# Usage:
#   scripts/services.sh up STATEDIR     print `export PGRELAY_DATABASE_URL=...` and
#                                       `export PGRELAY_REDIS_URL=...` on stdout
#                                       (nothing else goes to stdout); use as
#                                         envs=$(scripts/services.sh up "$dir") && eval "$envs"
#   scripts/services.sh down STATEDIR   stop only the servers that `up` started in
#                                       STATEDIR (idempotent; a missing STATEDIR is fine)
#
# PostgreSQL candidates, first that answers `select 1` within ~3 s wins:
#   $PGRELAY_DATABASE_URL, $RELAY_DATABASE_URL, $DATABASE_URL,
#   postgres://127.0.0.1:5432/test?sslmode=disable,
#   postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
# Redis candidates (must answer PING with PONG):
#   $PGRELAY_REDIS_URL, $RELAY_REDIS_URL, $REDIS_URL, redis://127.0.0.1:6379/0
# If none answers, a throwaway server is started inside STATEDIR on a free
# 127.0.0.1 port. PGRELAY_THROWAWAY=1 skips the candidates and always starts
# throwaway servers for both.
#
# On failure `up` exits non-zero; run `down` on the same STATEDIR afterwards to
# stop whatever it may have started already.
set -euo pipefail
shopt -s inherit_errexit

prog=services.sh
log() { printf '%s: %s\n' "$prog" "$*" >&2 || true; }
die() {
	printf '%s: error: %s\n' "$prog" "$*" >&2 || true
	exit 1
}

usage() {
	cat >&2 <<'EOF'
usage: scripts/services.sh up STATEDIR
       scripts/services.sh down STATEDIR
EOF
	exit 2
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# apt_install PKG... — install Debian packages when root (all output to stderr).
apt_install() {
	log "installing with apt-get: $*"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -q "$@" >&2 3>&-; then
		apt-get update -q >&2 3>&- || true
		apt-get install -y -q "$@" >&2 3>&-
	fi
}

# port_busy PORT — true if something accepts TCP connections on 127.0.0.1:PORT.
port_busy() {
	(: >"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_port — print a port on 127.0.0.1 that nothing listens on (below the
# Linux ephemeral range so outgoing connections don't grab it meanwhile).
free_port() {
	local i p
	for i in $(seq 1 200); do
		p=$((20000 + RANDOM % 12000))
		if ! port_busy "$p"; then
			echo "$p"
			return 0
		fi
	done
	die "could not find a free TCP port on 127.0.0.1"
}

# sq STRING — single-quote STRING for the shell.
sq() {
	local s=${1//\'/\'\\\'\'}
	printf "'%s'" "$s"
}

# ---------------------------------------------------------------- probes

pg_ok() {
	local out
	out=$(PGCONNECT_TIMEOUT=3 timeout 4 psql "$1" -X -Atqc 'select 1' 2>/dev/null </dev/null) || return 1
	[ "$out" = 1 ]
}

redis_ok() {
	local out
	# redis-cli warns on stderr when the URL has a password; ignore that.
	out=$(timeout 3 redis-cli -u "$1" ping 2>/dev/null </dev/null) || return 1
	[ "$out" = PONG ]
}

# Print a URL without its password (for messages).
redact() {
	printf '%s' "$1" | sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#'
}

need_psql() {
	command -v psql >/dev/null 2>&1 && return 0
	if is_root && command -v apt-get >/dev/null 2>&1; then
		apt_install postgresql-client
		command -v psql >/dev/null 2>&1 && return 0
	fi
	die "psql not found: install the PostgreSQL client (Debian: apt-get install postgresql-client)"
}

need_redis_cli() {
	command -v redis-cli >/dev/null 2>&1 && return 0
	if is_root && command -v apt-get >/dev/null 2>&1; then
		apt_install redis-tools
		command -v redis-cli >/dev/null 2>&1 && return 0
	fi
	die "redis-cli not found: install it (Debian: apt-get install redis-tools)"
}

# ---------------------------------------------------------------- PostgreSQL

# find_pg_bindir — print the directory holding initdb/pg_ctl/postgres, newest version first.
find_pg_bindir() {
	local d
	d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1) || true
	if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
		echo "$d"
		return 0
	fi
	if d=$(command -v initdb 2>/dev/null) && [ -x "$(dirname "$d")/pg_ctl" ]; then
		dirname "$d"
		return 0
	fi
	return 1
}

# as_pg_user CMD... — run CMD as the postgres user when we are root (initdb refuses root).
as_pg_user() {
	if is_root; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# pg_user_can_use DIR — true if the server's user can create files in DIR.
pg_user_can_use() {
	as_pg_user test -d "$1" -a -w "$1" -a -x "$1" 2>/dev/null
}

pg_stop_dir() { # pg_stop_dir BINDIR DATADIR
	local bindir=$1 data=$2 pid=""
	[ -f "$data/postmaster.pid" ] || return 0
	pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)
	if ! (cd / && as_pg_user "$bindir/pg_ctl" -D "$data" -w -t 20 stop -m fast >&2); then
		log "pg_ctl stop failed; killing postmaster ${pid:-?}"
		if [ -n "$pid" ]; then
			kill -QUIT "$pid" 2>/dev/null || true
			sleep 1
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
}

start_pg() { # start_pg STATEDIR — prints the URL
	# Runs in $(...): don't let the daemons inherit fd 3 (cmd_up's real stdout),
	# or whoever reads `up`'s output would wait for EOF until they stop.
	exec 3>&-
	local state=$1 bindir base data sock port attempt pglog
	if ! bindir=$(find_pg_bindir); then
		if is_root && command -v apt-get >/dev/null 2>&1; then
			apt_install postgresql
			bindir=$(find_pg_bindir) || die "PostgreSQL server binaries still not found after apt-get install postgresql"
		else
			die "no PostgreSQL server found and none installed: install it (Debian: sudo apt-get install postgresql), or set PGRELAY_DATABASE_URL to a reachable server"
		fi
	fi
	if is_root && ! id -u postgres >/dev/null 2>&1; then
		die "running as root but there is no 'postgres' user to run the throwaway server (initdb refuses root): create one (useradd --system postgres) or set PGRELAY_DATABASE_URL"
	fi

	base=$state/pg
	mkdir -p "$base"
	if is_root; then
		chown postgres: "$base"
		# mktemp -d dirs are 0700: let the postgres user traverse into STATEDIR.
		pg_user_can_use "$base" || chmod o+x "$state" || true
	fi
	# The socket path must stay under ~107 bytes, and the postgres user must be
	# able to reach the directory; otherwise use a directory under /tmp.
	if ! pg_user_can_use "$base" || [ ${#base} -gt 70 ]; then
		rmdir "$base" 2>/dev/null || true
		base=$(mktemp -d "${TMPDIR:-/tmp}/pgrelay-pg.XXXXXX")
		is_root && chown postgres: "$base"
		pg_user_can_use "$base" || die "the postgres user cannot write to $base"
	fi
	data=$base/data
	sock=$base/sock
	pglog=$base/postgres.log
	as_pg_user mkdir -p "$sock"

	log "initdb ($bindir) into $data"
	if ! (cd "$base" && as_pg_user "$bindir/initdb" -D "$data" -A trust -U postgres -E UTF8 --no-locale --no-sync >"$base/initdb.log" 2>&1); then
		tail -n 20 "$base/initdb.log" >&2 || true
		die "initdb failed (log: $base/initdb.log)"
	fi
	# Record what we own before starting, so `down` can clean up even a half start.
	printf 'BINDIR=%s\nBASE=%s\nDATA=%s\n' "$(sq "$bindir")" "$(sq "$base")" "$(sq "$data")" >"$state/pg.started"

	for attempt in 1 2 3 4 5; do
		port=$(free_port)
		if (cd "$base" && as_pg_user "$bindir/pg_ctl" -D "$data" -w -t 30 -l "$pglog" \
			-o "-p $port -k $sock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
			start >&2); then
			printf 'PORT=%s\n' "$port" >>"$state/pg.started"
			echo "postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
			return 0
		fi
		log "PostgreSQL did not start on port $port (attempt $attempt); log tail:"
		tail -n 5 "$pglog" >&2 2>/dev/null || true
	done
	die "could not start a throwaway PostgreSQL (log: $pglog)"
}

stop_pg() { # stop_pg STATEDIR
	local state=$1 BINDIR="" BASE="" DATA=""
	[ -f "$state/pg.started" ] || return 0
	# shellcheck disable=SC1091
	. "$state/pg.started"
	if [ -n "$DATA" ] && [ -d "$DATA" ]; then
		log "stopping throwaway PostgreSQL ($DATA)"
		pg_stop_dir "$BINDIR" "$DATA"
	fi
	if [ -n "$BASE" ] && [ -d "$BASE" ]; then
		rm -rf "$BASE"
	fi
	rm -f "$state/pg.started"
}

# ---------------------------------------------------------------- Redis

start_redis() { # start_redis STATEDIR — prints the URL
	# Runs in $(...): don't let the daemons inherit fd 3 (cmd_up's real stdout),
	# or whoever reads `up`'s output would wait for EOF until they stop.
	exec 3>&-
	local state=$1 dir port attempt i
	if ! command -v redis-server >/dev/null 2>&1; then
		if is_root && command -v apt-get >/dev/null 2>&1; then
			apt_install redis-server
			command -v redis-server >/dev/null 2>&1 || die "redis-server still not found after apt-get install redis-server"
		else
			die "no Redis server found and none installed: install it (Debian: sudo apt-get install redis-server), or set PGRELAY_REDIS_URL to a reachable server"
		fi
	fi
	dir=$state/redis
	mkdir -p "$dir"
	printf 'DIR=%s\nPIDFILE=%s\n' "$(sq "$dir")" "$(sq "$dir/redis.pid")" >"$state/redis.started"
	for attempt in 1 2 3 4 5; do
		port=$(free_port)
		rm -f "$dir/redis.pid"
		if redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
			--daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" >&2 </dev/null; then
			for i in $(seq 1 50); do
				if redis_ok "redis://127.0.0.1:$port/0"; then
					printf 'PORT=%s\n' "$port" >>"$state/redis.started"
					echo "redis://127.0.0.1:$port/0"
					return 0
				fi
				sleep 0.1
			done
		fi
		log "Redis did not start on port $port (attempt $attempt); log tail:"
		tail -n 5 "$dir/redis.log" >&2 2>/dev/null || true
		if [ -s "$dir/redis.pid" ]; then
			kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
		fi
	done
	die "could not start a throwaway Redis (log: $dir/redis.log)"
}

stop_redis() { # stop_redis STATEDIR
	local state=$1 DIR="" PIDFILE="" PORT="" pid="" i
	[ -f "$state/redis.started" ] || return 0
	# shellcheck disable=SC1091
	. "$state/redis.started"
	[ -n "$PIDFILE" ] && [ -s "$PIDFILE" ] && pid=$(cat "$PIDFILE" 2>/dev/null || true)
	if [ -n "$PORT" ] || [ -n "$pid" ]; then
		log "stopping throwaway Redis (port ${PORT:-?}, pid ${pid:-?})"
	fi
	if [ -n "$PORT" ]; then
		timeout 5 redis-cli -h 127.0.0.1 -p "$PORT" shutdown nosave >/dev/null 2>&1 || true
	fi
	if [ -n "$pid" ]; then
		for i in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			[ "$i" -eq 20 ] && kill -TERM "$pid" 2>/dev/null
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	if [ -n "$DIR" ] && [ -d "$DIR" ]; then
		rm -rf "$DIR"
	fi
	rm -f "$state/redis.started"
}

# ---------------------------------------------------------------- commands

cmd_up() {
	local state=$1 url="" c
	# Everything except the final export lines goes to stderr.
	exec 3>&1 1>&2
	mkdir -p "$state"
	state=$(cd "$state" && pwd)
	local throwaway=${PGRELAY_THROWAWAY:-0}

	need_psql
	# A throwaway server from an earlier `up` in this STATEDIR that still answers is reused.
	if [ -f "$state/pg.started" ]; then
		local PORT=""
		# shellcheck disable=SC1091
		. "$state/pg.started"
		if [ -n "$PORT" ] && pg_ok "postgres://postgres@127.0.0.1:$PORT/postgres?sslmode=disable"; then
			url="postgres://postgres@127.0.0.1:$PORT/postgres?sslmode=disable"
			log "PostgreSQL: reusing throwaway server at $url"
		else
			stop_pg "$state"
		fi
	fi
	if [ -z "$url" ] && [ "$throwaway" != 1 ]; then
		for c in "${PGRELAY_DATABASE_URL:-}" "${RELAY_DATABASE_URL:-}" "${DATABASE_URL:-}" \
			'postgres://127.0.0.1:5432/test?sslmode=disable' \
			'postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'; do
			[ -n "$c" ] || continue
			if pg_ok "$c"; then
				url=$c
				log "PostgreSQL: using $(redact "$c")"
				break
			fi
			log "PostgreSQL: no answer from $(redact "$c")"
		done
	fi
	if [ -z "$url" ]; then
		log "PostgreSQL: starting a throwaway server in $state"
		url=$(start_pg "$state")
		pg_ok "$url" || die "throwaway PostgreSQL at $url does not answer"
		log "PostgreSQL: throwaway server at $url"
	fi
	local pg_url=$url
	url=""

	need_redis_cli
	if [ -f "$state/redis.started" ]; then
		local PORT=""
		# shellcheck disable=SC1091
		. "$state/redis.started"
		if [ -n "$PORT" ] && redis_ok "redis://127.0.0.1:$PORT/0"; then
			url="redis://127.0.0.1:$PORT/0"
			log "Redis: reusing throwaway server at $url"
		else
			stop_redis "$state"
		fi
	fi
	if [ -z "$url" ] && [ "$throwaway" != 1 ]; then
		for c in "${PGRELAY_REDIS_URL:-}" "${RELAY_REDIS_URL:-}" "${REDIS_URL:-}" 'redis://127.0.0.1:6379/0'; do
			[ -n "$c" ] || continue
			if redis_ok "$c"; then
				url=$c
				log "Redis: using $(redact "$c")"
				break
			fi
			log "Redis: no answer from $(redact "$c")"
		done
	fi
	if [ -z "$url" ]; then
		log "Redis: starting a throwaway server in $state"
		url=$(start_redis "$state")
		log "Redis: throwaway server at $url"
	fi
	local redis_url=$url

	{
		printf 'export PGRELAY_DATABASE_URL=%s\n' "$(sq "$pg_url")"
		printf 'export PGRELAY_REDIS_URL=%s\n' "$(sq "$redis_url")"
	} | tee "$state/env" >&3
}

cmd_down() {
	local state=$1
	[ -d "$state" ] || return 0
	# Do both even if one fails.
	local rc=0
	stop_redis "$state" || rc=1
	stop_pg "$state" || rc=1
	return "$rc"
}

[ $# -eq 2 ] || usage
[ -n "$2" ] || usage
case $1 in
up) cmd_up "$2" ;;
down) cmd_down "$2" ;;
*) usage ;;
esac
