#!/usr/bin/env bash
# scripts/test.sh — the test command of oncecron (README and CI run it).
#
#   scripts/test.sh                       everything: gofmt, go vet ./..., and
#                                         go test -race -count=1 -timeout 30m ./...
#   scripts/test.sh [GO TEST ARGS...]     the same with your arguments appended
#                                         to go test, e.g.
#       scripts/test.sh ./locking/...
#       scripts/test.sh -run TestLease -v ./locking/...
#       scripts/test.sh -count=3 -timeout 5m ./internal/testenv/...
#
# Arguments go to `go test` verbatim, after the defaults, so a later flag
# (-count=3, -timeout 5m, -race=false) wins. Package patterns among them
# (arguments starting with ./ ../ or github.com/oncecron/oncecron, or ".",
# that are not the value of a flag such as -run) replace ./... and are also what `go vet` and `gofmt -l` check (gofmt the
# whole directory tree of each); with none, ./... is used: the whole repo,
# as CI runs it.
#
# Before the tests it installs what is missing (redis-server, the ZooKeeper
# jars, a headless Java: Debian packages, no service started), builds
# tools/etcd-test-server, and starts Redis, etcd and ZooKeeper on free
# 127.0.0.1 ports in a temporary directory. The tests find them through
#   ONCECRON_TEST_REDIS, ONCECRON_TEST_ETCD, ONCECRON_TEST_ZK   (host:port)
# and start private servers (internal/testenv) with
#   ONCECRON_TEST_REDIS_SERVER, ONCECRON_TEST_ETCD_SERVER,
#   ONCECRON_TEST_ZK_CLASSPATH, ONCECRON_TEST_JAVA.
# On every exit it stops exactly the processes it started (by PID) and
# removes the temporary directory. Set ONCECRON_TEST_KEEP=1 to keep the
# directory (server logs) after the run. It exits with go test's status, or
# non-zero when gofmt, go vet, an install or a server start fails.
#
# Other knobs: ONCECRON_CACHE_DIR (where the etcd test server is built,
# default ~/.cache/oncecron), ONCECRON_TEST_START_TIMEOUT (seconds a server
# may take to answer, default 60).
set -euo pipefail
OC_PROG=test.sh
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$OC_ROOT"

# The go test and build flags that take a separate value (-run X): their
# value is no package pattern.
with_value=" run skip bench benchtime count cpu parallel timeout list shuffle fuzz
 fuzztime fuzzminimizetime coverprofile covermode coverpkg cpuprofile memprofile
 memprofilerate blockprofile blockprofilerate mutexprofile mutexprofilefraction
 trace outputdir tags o exec p ldflags gcflags asmflags vet mod modfile overlay pgo "
pkgs=()
value_next=0
for a in "$@"; do
	if ((value_next)); then
		value_next=0
		continue
	fi
	case $a in
	-*=*) ;;
	-*)
		f=${a#-}
		f=${f#-}
		[[ $with_value == *" $f "* ]] && value_next=1
		;;
	. | ./* | ../* | github.com/oncecron/oncecron | github.com/oncecron/oncecron/*) pkgs+=("$a") ;;
	esac
done
test_args=("$@")
if ((${#pkgs[@]} == 0)); then
	pkgs=(./...)
	test_args+=(./...)
fi

t_all=$(oc_ms)
OC_STATE=
gotest_pid=

trap oc_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t=$(oc_ms)
fmt_dirs=()
for p in "${pkgs[@]}"; do
	p=${p#github.com/oncecron/oncecron}
	p=${p#/}
	p=${p%...}
	p=${p%/}
	fmt_dirs+=("${p:-.}")
done
unformatted=$(gofmt -l "${fmt_dirs[@]}")
if [[ -n $unformatted ]]; then
	oc_log "gofmt -l lists files that are not formatted:"
	# shellcheck disable=SC2001 # indents every line of a list, not one string
	sed 's/^/    /' <<<"$unformatted" >&2
	exit 1
fi
go vet "${pkgs[@]}"
oc_log "gofmt and go vet took $(oc_took "$t")"

t=$(oc_ms)
oc_install_deps
oc_log "install check took $(oc_took "$t")"

t=$(oc_ms)
oc_build_etcd
oc_log "etcd test server build took $(oc_took "$t")"

t=$(oc_ms)
OC_STATE=$(cd "$(mktemp -d "${TMPDIR:-/tmp}/oncecron-test.XXXXXX")" && pwd -P)
oc_start_all
# shellcheck source=/dev/null
source "$OC_STATE/env"
oc_log "servers started in $(oc_took "$t"): redis $ONCECRON_TEST_REDIS, etcd $ONCECRON_TEST_ETCD, zookeeper $ONCECRON_TEST_ZK"

# In the background so that a TERM or INT to this script is handled at once.
go test -race -count=1 -timeout 30m "${test_args[@]}" </dev/null &
gotest_pid=$!
rc=0
wait "$gotest_pid" || rc=$?
gotest_pid=
exit "$rc"
