#!/usr/bin/env bash
# test.sh — pgrelay's full check (what `make test` and CI run).
#
# Steps: gofmt, go vet, go mod tidy check, Chromium present, PostgreSQL and
# Redis found or started (scripts/services.sh), then
#   go test -race -count=1 -timeout 15m $TEST_ARGS ./...
# with PGRELAY_TEST_DATABASE_URL and PGRELAY_TEST_REDIS_URL exported.
#
# Environment:
#   TEST_ARGS            extra `go test` arguments, e.g. TEST_ARGS='-run TestRelay -v'
#   PGRELAY_THROWAWAY=1  use throwaway PostgreSQL/Redis servers
#   PGRELAY_DATABASE_URL / PGRELAY_REDIS_URL (and the other names services.sh
#                        knows) to use specific servers
set -euo pipefail
shopt -s inherit_errexit

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here/.."

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

t_all=$(now)
timings=()
step_name=""
t_step=""
begin() {
	step_name=$1
	t_step=$(now)
	printf '\n==> %s\n' "$step_name"
}
end() {
	local d
	d=$(elapsed "$t_step")
	timings+=("$(printf '%-22s %s' "$step_name" "$d")")
	printf '<== %s ok (%s)\n' "$step_name" "$d"
	step_name=""
}

tmp=""
services_up=0
finish() {
	local rc=$?
	set +e
	trap '' INT TERM PIPE
	if [ "$services_up" = 1 ]; then
		bash "$here/services.sh" down "$tmp/services"
	fi
	if [ -n "$tmp" ]; then rm -rf "$tmp"; fi
	if [ -n "$step_name" ]; then
		printf '<== %s FAILED (%s)\n' "$step_name" "$(elapsed "$t_step")"
	fi
	if [ "${#timings[@]}" -gt 0 ]; then
		printf '\ntimings:\n'
		printf '  %s\n' "${timings[@]}"
	fi
	if [ "$rc" = 0 ]; then
		printf 'test.sh: all checks passed (%s)\n' "$(elapsed "$t_all")"
	else
		printf 'test.sh: FAILED (exit %s) after %s\n' "$rc" "$(elapsed "$t_all")" >&2
	fi
	exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

go version

# ------------------------------------------------------------------ gofmt
begin gofmt
unformatted=$(gofmt -l . | grep -v '^vendor/' || true)
if [ -n "$unformatted" ]; then
	printf 'gofmt: these files need formatting (run "make fmt"):\n%s\n' "$unformatted" >&2
	exit 1
fi
end

# ------------------------------------------------------------------ go vet
begin "go vet"
go vet ./...
end

# ------------------------------------------------------------------ go mod tidy
begin "go mod tidy"
if ! tidy_diff=$(go mod tidy -diff 2>&1); then
	printf '%s\n' "$tidy_diff" >&2
	echo 'go.mod/go.sum are not tidy: run "go mod tidy" and commit the result' >&2
	exit 1
fi
end

# ------------------------------------------------------------------ chromium
begin chromium
if [ ! -x /usr/bin/chromium ]; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
		export DEBIAN_FRONTEND=noninteractive
		echo "installing chromium with apt-get"
		if ! apt-get install -y -q chromium; then
			apt-get update -q
			apt-get install -y -q chromium
		fi
	else
		echo 'the browser tests need /usr/bin/chromium: install it (Debian: sudo apt-get install chromium)' >&2
		exit 1
	fi
fi
/usr/bin/chromium --version 2>/dev/null || true
end

# ------------------------------------------------------------------ services
begin services
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pgrelay-test.XXXXXX")
services_up=1
svc_env=$(bash "$here/services.sh" up "$tmp/services")
eval "$svc_env"
export PGRELAY_TEST_DATABASE_URL=$PGRELAY_DATABASE_URL
export PGRELAY_TEST_REDIS_URL=$PGRELAY_REDIS_URL
echo "PGRELAY_TEST_DATABASE_URL=$PGRELAY_TEST_DATABASE_URL"
echo "PGRELAY_TEST_REDIS_URL=$PGRELAY_TEST_REDIS_URL"
end

# ------------------------------------------------------------------ go test
extra=()
if [ -n "${TEST_ARGS:-}" ]; then
	read -r -a extra <<<"$TEST_ARGS"
fi
begin "go test"
echo "+ go test -race -count=1 -timeout 15m ${extra[*]:+${extra[*]} }./..."
go test -race -count=1 -timeout 15m "${extra[@]}" ./...
end
