#!/usr/bin/env bash
# scripts/chaos.sh — the long chaos run of oncecron (internal/chaos, cmd/chaos).
#
#   scripts/chaos.sh [--duration 10m] [--seed N] [--backends redis,etcd,zookeeper] [--keep] [--quiet]
#
# For each backend in turn it builds the scheduler, starts a private server
# and three replicas (each through its own fault-injecting proxy), injects
# faults drawn from the seed for --duration (kill -9 and restart, SIGSTOP
# shorter and longer than the lock TTL, a partition of one replica, a restart
# of the backend), then checks the run records and the jobs' output: no tick
# completed twice, no tick missed while a replica was healthy, duplicates
# only after a lost lease, tokens rising. It prints a summary table per
# backend and exits 0 when there is no violation, 1 when there is one (the
# run's files are kept and named), 2 on bad usage, 3 when a run could not be
# carried out. The seed is printed; pass it again to replay the schedule.
#
# Like scripts/test.sh it installs redis-server, the ZooKeeper jars and a
# headless Java when missing and builds tools/etcd-test-server; it starts no
# shared server (every run starts its own). The short version of the same
# suite runs in scripts/test.sh as TestChaosShort (internal/chaos).
set -euo pipefail
OC_PROG=chaos.sh
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$OC_ROOT"

args=()
while (($#)); do
	case $1 in
	--duration | --seed | --backends)
		(($# >= 2)) || oc_die "$1 needs a value"
		args+=("$1=$2")
		shift 2
		;;
	--duration=* | --seed=* | --backends=* | --keep | --quiet) args+=("$1") && shift ;;
	-h | --help)
		sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*) oc_die "unknown argument $1 (see scripts/chaos.sh --help)" ;;
	esac
done

trap oc_undo_policy EXIT
if [[ -z ${ONCECRON_TEST_REDIS_SERVER:-} || -z ${ONCECRON_TEST_ETCD_SERVER:-} ||
	-z ${ONCECRON_TEST_JAVA:-} || -z ${ONCECRON_TEST_ZK_CLASSPATH:-} ]]; then
	oc_install_deps
	oc_build_etcd
	oc_find_tools
	export ONCECRON_TEST_REDIS_SERVER=${ONCECRON_TEST_REDIS_SERVER:-$OC_REDIS_SERVER}
	export ONCECRON_TEST_ETCD_SERVER=${ONCECRON_TEST_ETCD_SERVER:-$OC_ETCD_SERVER}
	export ONCECRON_TEST_JAVA=${ONCECRON_TEST_JAVA:-$OC_JAVA}
	export ONCECRON_TEST_ZK_CLASSPATH=${ONCECRON_TEST_ZK_CLASSPATH:-$OC_ZK_CLASSPATH}
fi
trap - EXIT

mkdir -p "$OC_CACHE/bin"
go build -o "$OC_CACHE/bin/oncecron-chaos" ./cmd/chaos || oc_die "building cmd/chaos failed"
# exec: INT and TERM reach the chaos program, which stops everything it started.
exec "$OC_CACHE/bin/oncecron-chaos" "${args[@]}"
