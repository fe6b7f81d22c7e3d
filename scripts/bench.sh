#!/usr/bin/env bash
# scripts/bench.sh — oncecron's lock benchmarks next to their raw floors.
#
#   scripts/bench.sh [-count N] [-bench REGEXP] [-benchtime D] [-md] [PACKAGES...]
#
#   -count N        rounds (default 5, or $ONCECRON_BENCH_COUNT). Each round runs
#                   the whole set once:
#                     go test -run '^$' -bench REGEXP -benchmem -count 1 PACKAGES
#                   so every benchmark and its raw floor run next to each other
#                   N times, and drift on the machine hits both alike (go test
#                   -count N would run each benchmark N times in a row instead).
#   -bench REGEXP   which benchmarks (default ".", or $ONCECRON_BENCH)
#   -benchtime D    go test -benchtime (default 1s, or $ONCECRON_BENCH_TIME)
#   -md             print the summary as Markdown tables (for BENCHMARKS.md)
#   PACKAGES        default: every package under ./locking and ./scheduler that
#                   has a Benchmark function, and ./bench
#   ./bench         the comparison with other lock libraries (redsync,
#                   bsm/redislock, etcd's concurrency.Mutex, go-zookeeper's
#                   zk.Lock): its own Go module in bench/, so those libraries
#                   never enter oncecron's go.mod. Each round runs it after the
#                   other packages, as  go -C bench test ... .  Give ./bench
#                   alone to run only it, or only other packages to skip it.
#
# Like scripts/test.sh it installs what is missing, builds tools/etcd-test-server,
# starts its own Redis, etcd and ZooKeeper on free 127.0.0.1 ports in a temporary
# directory, and on every exit stops exactly the processes it started (by PID).
# It prints the machine, then per benchmark the median of each metric over the
# rounds, and the ratio oncecron/raw for each pair (scripts/benchsummary). The
# raw `go test` output is kept in .tmp/bench/ (the path is printed). It exits
# non-zero when a round failed (after summarizing the rounds that ran).
set -euo pipefail
OC_PROG=bench.sh
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$OC_ROOT"

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}

rounds=${ONCECRON_BENCH_COUNT:-5}
bench=${ONCECRON_BENCH:-.}
benchtime=${ONCECRON_BENCH_TIME:-1s}
md=()
pkgs=()
while (($#)); do
	case $1 in
	-count | --count | -n) rounds=${2:?-count needs a value}; shift 2 ;;
	-count=* | --count=*) rounds=${1#*=}; shift ;;
	-bench | --bench) bench=${2:?-bench needs a value}; shift 2 ;;
	-bench=* | --bench=*) bench=${1#*=}; shift ;;
	-benchtime | --benchtime) benchtime=${2:?-benchtime needs a value}; shift 2 ;;
	-benchtime=* | --benchtime=*) benchtime=${1#*=}; shift ;;
	-md | --md) md=(-md); shift ;;
	-h | -help | --help) usage ;;
	-*) oc_log "unknown flag $1"; usage ;;
	*) pkgs+=("$1"); shift ;;
	esac
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || oc_die "-count must be a positive integer, not '$rounds'"
if ((${#pkgs[@]} == 0)); then
	mapfile -t pkgs < <(grep -rl --include='*_test.go' '^func Benchmark' locking scheduler 2>/dev/null |
		xargs -r -n1 dirname | sort -u | sed 's|^|./|')
	if [[ -f bench/go.mod ]] && grep -qs '^func Benchmark' bench/*_test.go; then
		pkgs+=(./bench)
	fi
	((${#pkgs[@]})) || oc_die "no benchmarks found under ./locking, ./scheduler and ./bench"
fi
# The comparison module (bench/) runs as a go test of its own.
root_pkgs=()
compare=0
for p in "${pkgs[@]}"; do
	case $p in
	bench | bench/ | ./bench | ./bench/ | bench/... | ./bench/...) compare=1 ;;
	*) root_pkgs+=("$p") ;;
	esac
done
((compare == 0)) || [[ -f bench/go.mod ]] || oc_die "bench/go.mod not found: ./bench is the comparison module"

t_all=$(oc_ms)
OC_STATE=
gotest_pid=

trap oc_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

oc_install_deps
oc_build_etcd
OC_STATE=$(cd "$(mktemp -d "${TMPDIR:-/tmp}/oncecron-bench.XXXXXX")" && pwd -P)
oc_start_all
# shellcheck source=/dev/null
source "$OC_STATE/env"
oc_log "servers: redis $ONCECRON_TEST_REDIS, etcd $ONCECRON_TEST_ETCD, zookeeper $ONCECRON_TEST_ZK"

# zk_version asks the ZooKeeper server itself (four-letter word srvr).
zk_version() {
	local line
	(
		exec 3<>"/dev/tcp/${ONCECRON_TEST_ZK%:*}/${ONCECRON_TEST_ZK##*:}" || exit 1
		printf srvr >&3
		while IFS= read -r -t 2 line <&3; do
			if [[ $line == "Zookeeper version:"* ]]; then
				line=${line#Zookeeper version: }
				line=${line%%,*}
				echo "${line%%-\${*}"
				exit 0
			fi
		done
		exit 1
	) 2>/dev/null || echo unknown
}

machine() {
	local cpu etcd_v
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n1)
	etcd_v=$(go version -m "$OC_ETCD_SERVER" 2>/dev/null | awk '$2 == "go.etcd.io/etcd/server/v3" { print $3; exit }')
	echo "date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "machine:   $(uname -srm), $(nproc) CPUs (nproc)${cpu:+, $cpu}"
	echo "memory:    $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null)"
	echo "load avg:  $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null) (1, 5, 15 min) at start"
	echo "go:        $(go version)"
	echo "redis:     $("$OC_REDIS_SERVER" --version) (appendonly yes, appendfsync always)"
	echo "etcd:      ${etcd_v:-unknown} (tools/etcd-test-server, embedded, one member)"
	echo "zookeeper: $(zk_version) (standalone, $("$OC_JAVA" -version 2>&1 | head -n1))"
	echo "git:       $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')"
	local cmd="go test -run '^\$' -bench '$bench' -benchmem -benchtime $benchtime -count 1"
	if ((${#root_pkgs[@]} && compare)); then
		echo "command:   $cmd ${root_pkgs[*]}; then go -C bench ${cmd#go } .  x $rounds rounds"
	elif ((compare)); then
		echo "command:   go -C bench ${cmd#go } .  x $rounds rounds"
	else
		echo "command:   $cmd ${root_pkgs[*]}  x $rounds rounds"
	fi
}

mkdir -p "$OC_ROOT/.tmp/bench"
out=$OC_ROOT/.tmp/bench/bench-$(date -u +%Y%m%d-%H%M%S).txt
info=$(machine)
printf '%s\n' "$info" | sed 's/^/# /' >"$out"
printf '%s\n\n' "$info"

# gotest ARGS... runs go ARGS (a go test) in the background, so that a TERM
# or INT to this script is handled at once, appending its output to $round.
gotest() {
	local rc=0
	go "$@" </dev/null >>"$round" 2>&1 &
	gotest_pid=$!
	wait "$gotest_pid" || rc=$?
	gotest_pid=
	return "$rc"
}

failed=()
for ((r = 1; r <= rounds; r++)); do
	t=$(oc_ms)
	oc_log "round $r/$rounds: ${pkgs[*]}"
	round=$OC_STATE/round-$r.txt
	: >"$round"
	rc=0
	if ((${#root_pkgs[@]})); then
		gotest test -run '^$' -bench "$bench" -benchmem -benchtime "$benchtime" -count 1 -timeout 30m \
			"${root_pkgs[@]}" || rc=$?
	fi
	if ((compare)); then
		gotest -C bench test -run '^$' -bench "$bench" -benchmem -benchtime "$benchtime" -count 1 -timeout 30m \
			. || rc=$((rc ? rc : $?))
	fi
	cat "$round" >>"$out"
	grep -E '^(Benchmark|FAIL|---|panic:)' "$round" | sed 's/^/    /' >&2 || true
	if ((rc != 0)); then
		failed+=("$r")
		oc_log "round $r failed (exit $rc); its output is in $out"
	fi
	oc_log "round $r took $(oc_took "$t")"
done
echo "# load avg at end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)" >>"$out"

echo "load avg at end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
echo "raw results: ${out#"$OC_ROOT"/}"
echo
go run ./scripts/benchsummary "${md[@]}" "$out"
if ((${#failed[@]})); then
	oc_log "rounds that failed: ${failed[*]}"
	exit 1
fi
