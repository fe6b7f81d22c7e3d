#!/usr/bin/env bash
# scripts/servers.sh — the test servers for a developer's shell.
#
#   eval "$(scripts/servers.sh start)"   start Redis, etcd and ZooKeeper on free
#                                         127.0.0.1 ports (or reuse the ones
#                                         running) and export ONCECRON_TEST_*
#   scripts/servers.sh env               print the export lines again
#   scripts/servers.sh stop              stop the servers and remove their data
#
# Then `go test ./...` works as under scripts/test.sh. The servers keep their
# data and logs in $ONCECRON_SERVERS_DIR (default .tmp/servers in the repo).
# Only the export lines go to stdout; progress goes to stderr.
set -euo pipefail
OC_PROG=servers.sh
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

state=${ONCECRON_SERVERS_DIR:-$OC_ROOT/.tmp/servers}
mkdir -p "$state"
OC_STATE=$(cd "$state" && pwd -P)
marker=$OC_STATE/.oncecron-servers

# wipe empties the state dir, refusing a dir that these scripts did not make.
wipe() {
	if [[ ! -e $marker && -n $(ls -A "$OC_STATE") ]]; then
		oc_die "$OC_STATE is not empty and not made by servers.sh: not touching it"
	fi
	rm -rf "${OC_STATE:?}"/* "$marker"
}

running() {
	local name pid n=0
	[[ -r $OC_STATE/pids && -r $OC_STATE/env ]] || return 1
	while read -r name pid; do
		oc_alive "$pid" && oc_owned "$pid" || return 1
		n=$((n + 1))
	done <"$OC_STATE/pids"
	((n == 3))
}

case ${1:-} in
start)
	if running; then
		oc_log "servers already running (stop them with scripts/servers.sh stop)"
		cat "$OC_STATE/env"
		exit 0
	fi
	oc_stop_all
	wipe
	touch "$marker"
	ok=0
	trap 'oc_undo_policy; ((ok)) || oc_stop_all' EXIT
	oc_install_deps
	oc_build_etcd
	oc_start_all
	# shellcheck disable=SC2034 # read by the EXIT trap
	ok=1
	oc_log "logs and data in $OC_STATE"
	cat "$OC_STATE/env"
	;;
env)
	running || oc_die "servers not running: eval \"\$(scripts/servers.sh start)\""
	cat "$OC_STATE/env"
	;;
stop)
	oc_stop_all
	wipe
	rmdir "$OC_STATE" 2>/dev/null || true
	oc_log "stopped"
	;;
*)
	echo "usage: eval \"\$(scripts/servers.sh start)\" | scripts/servers.sh env | scripts/servers.sh stop" >&2
	exit 2
	;;
esac
