#!/usr/bin/env bash
# scripts/bench.sh — oncecron's lock benchmarks next to their raw floors.
#
#   scripts/bench.sh [-count N] [-bench REGEXP] [-benchtime D] [-md] [PACKAGES...]
#   scripts/bench.sh [-precision] [-scale] [-failover] [-system] [-jobs N] [-skew D]
#                    [-rates LIST] [-kills N] [PACKAGES...]
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
# System benchmarks (whole schedulers, not single lock operations; each takes
# minutes, so they run only when asked for, and then without the go test
# benchmarks unless PACKAGES are given too):
#   -precision      fire precision, 1,000 jobs every second: robfig/cron alone,
#                   gocron v2 on 3 schedulers with a Redis locker, oncecron with
#                   3 replicas on memory, Redis, etcd and ZooKeeper, 3 rounds
#                   interleaved, after one unmeasured run of each contender that uses a
#                   server (go -C bench run ./cmd/firebench precision; about 3.5 min)
#   -jobs N         jobs of -precision (default 1000, or $ONCECRON_BENCH_JOBS)
#   -skew D         clock offsets between the replicas of -precision: -D, 0, +D (default 0)
#   -scale          the same for oncecron only, per backend, at each rate of
#                   -rates (ticks per second; default 250,500,1000,2000,4000),
#                   2 rounds: the highest rate with p99 < 100 ms and no miss; a
#                   backend that missed ticks in both rounds of a rate skips the
#                   higher ones (firebench scale; about 6 min)
#   -failover       kill -9 of a tick's runner, -kills times per backend (default
#                   5), 3 real scheduler processes, time until another replica
#                   starts the tick, against TTL + 1s (go run ./cmd/chaos --failover; about 3.5 min)
#   -system         all three (about 12 min on 2 CPUs)
#   Their Markdown tables are printed and kept in .tmp/bench/system-*.md.
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
precision=0 scale=0 failover=0
jobs=${ONCECRON_BENCH_JOBS:-1000}
skew=0s
rates=250,500,1000,2000,4000
kills=5
while (($#)); do
	case $1 in
	-precision | --precision) precision=1; shift ;;
	-scale | --scale) scale=1; shift ;;
	-failover | --failover) failover=1; shift ;;
	-system | --system) precision=1 scale=1 failover=1; shift ;;
	-jobs | --jobs) jobs=${2:?-jobs needs a value}; shift 2 ;;
	-skew | --skew) skew=${2:?-skew needs a value}; shift 2 ;;
	-rates | --rates) rates=${2:?-rates needs a value}; shift 2 ;;
	-kills | --kills) kills=${2:?-kills needs a value}; shift 2 ;;
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
[[ $jobs =~ ^[1-9][0-9]*$ ]] || oc_die "-jobs must be a positive integer, not '$jobs'"
[[ $kills =~ ^[1-9][0-9]*$ ]] || oc_die "-kills must be a positive integer, not '$kills'"
system=$((precision + scale + failover))
if ((${#pkgs[@]} == 0 && system == 0)); then
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
# ZooKeeper as zkServer.sh runs it, not the tests' fast-starting JVM (see lib.sh).
OC_ZK_JVM_OPTS=-Xmx1000m
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
	echo "zookeeper: $(zk_version) (standalone, $("$OC_JAVA" -version 2>&1 | head -n1), JVM options $OC_ZK_JVM_OPTS)"
	echo "git:       $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')"
	local cmd="go test -run '^\$' -bench '$bench' -benchmem -benchtime $benchtime -count 1"
	if ((${#pkgs[@]} == 0)); then
		echo "command:   system benchmarks only (precision $precision, scale $scale, failover $failover)"
	elif ((${#root_pkgs[@]} && compare)); then
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
((${#pkgs[@]})) || rounds=0
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

# system NAME CMD... runs one system benchmark in the background (so that a
# TERM or INT to this script is handled at once; its progress goes to stderr),
# then appends its Markdown tables to $sys and prints them.
sys=$OC_ROOT/.tmp/bench/system-$(date -u +%Y%m%d-%H%M%S).md
system() {
	local name=$1 rc=0 t
	shift
	t=$(oc_ms)
	oc_log "$name: $*"
	"$@" </dev/null >"$OC_STATE/$name.md" &
	gotest_pid=$!
	wait "$gotest_pid" || rc=$?
	gotest_pid=
	oc_log "$name took $(oc_took "$t")"
	if ((rc != 0)); then
		failed+=("$name")
		oc_log "$name failed (exit $rc)"
	fi
	{
		printf '\n## %s\n\n' "$name"
		printf '    %s\n' "$*" "took $(oc_took "$t")" "load avg at end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
		echo
		cat "$OC_STATE/$name.md"
	} | tee -a "$sys"
}
if ((system)); then
	printf '%s\n' "$info" | sed 's/^/    /' >"$sys"
	go -C bench build -o "$OC_STATE/firebench" ./cmd/firebench || oc_die "building bench/cmd/firebench failed"
	go build -o "$OC_STATE/chaos" ./cmd/chaos || oc_die "building cmd/chaos failed"
	((precision == 0)) || system precision "$OC_STATE/firebench" precision -jobs "$jobs" -skew "$skew"
	((scale == 0)) || system scale "$OC_STATE/firebench" scale -rates "$rates"
	# cmd/chaos starts private servers from the programs in $OC_STATE/env.
	((failover == 0)) || system failover "$OC_STATE/chaos" --failover "$kills"
fi

echo "load avg at end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
if ((system)); then
	echo "system benchmark tables: ${sys#"$OC_ROOT"/}"
fi
if ((${#pkgs[@]})); then
	echo "raw results: ${out#"$OC_ROOT"/}"
	echo
	go run ./scripts/benchsummary "${md[@]}" "$out"
fi
if ((${#failed[@]})); then
	oc_log "failed (rounds, or system benchmarks): ${failed[*]}"
	exit 1
fi
