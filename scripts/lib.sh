# shellcheck shell=bash
# Shared by scripts/test.sh and scripts/servers.sh; source it, do not run it.
#
# It installs the test servers' Debian packages when missing, builds the etcd
# test server (tools/etcd-test-server), and starts Redis, etcd and ZooKeeper
# on free 127.0.0.1 ports under a state directory "$OC_STATE":
#
#   $OC_STATE/{redis,etcd,zookeeper}/   each server's working directory, data and log
#   $OC_STATE/pids               "name pid" lines of the servers started
#   $OC_STATE/env                the export lines for the tests
#
# Every server runs with its working directory inside $OC_STATE, and
# oc_stop_all only signals a recorded PID whose /proc/PID/cwd is still there:
# a PID reused by another process is never touched.

OC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
OC_PROG=${OC_PROG:-$(basename "$0")}
OC_START_TIMEOUT=${ONCECRON_TEST_START_TIMEOUT:-60} # seconds, per server
OC_CACHE=${ONCECRON_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/oncecron}
OC_ZK_MAIN=org.apache.zookeeper.server.ZooKeeperServerMain
# The Debian jars of ZooKeeper (libzookeeper-java): zookeeper.jar's manifest
# names the libraries it needs in /usr/share/java; slf4j-simple gives it a log.
OC_ZK_CLASSPATH=${ONCECRON_TEST_ZK_CLASSPATH:-/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar}
OC_USED_PORTS=" "

oc_log() { printf '%s: %s\n' "$OC_PROG" "$*" >&2; }
oc_die() {
	oc_log "error: $*"
	exit 1
}
oc_ms() { date +%s%3N; }
oc_took() { echo "$(($(oc_ms) - $1))ms"; }

# oc_install_deps installs what the servers need, and only what is missing:
# redis-server, the ZooKeeper jars and a headless Java. Debian's services are
# kept from starting during the install by a temporary policy-rc.d.
oc_install_deps() {
	local pkgs=() sudo=() made_policy=0 rc=0
	command -v redis-server >/dev/null 2>&1 || pkgs+=(redis-server)
	[[ -r /usr/share/java/zookeeper.jar ]] || pkgs+=(libzookeeper-java)
	command -v java >/dev/null 2>&1 || pkgs+=(default-jre-headless)
	((${#pkgs[@]})) || return 0
	((EUID == 0)) || sudo=(sudo)
	oc_log "installing ${pkgs[*]}"
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\n# oncecron scripts/lib.sh: no service starts during the install\nexit 101\n' |
			"${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
		"${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
		made_policy=1
		OC_MADE_POLICY=1
	fi
	"${sudo[@]}" apt-get update -qq &&
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends -o DPkg::Lock::Timeout=600 "${pkgs[@]}" >&2 || rc=$?
	if ((made_policy)); then oc_undo_policy; fi
	((rc == 0)) || oc_die "apt-get failed (exit $rc) installing ${pkgs[*]}"
}

# oc_undo_policy removes the policy-rc.d that oc_install_deps made, also
# when the script is interrupted during the install.
oc_undo_policy() {
	if [[ -n ${OC_MADE_POLICY:-} ]]; then
		if ((EUID == 0)); then rm -f /usr/sbin/policy-rc.d; else sudo rm -f /usr/sbin/policy-rc.d; fi
		OC_MADE_POLICY=
	fi
}

# oc_build_etcd builds tools/etcd-test-server into the cache directory and
# sets OC_ETCD_SERVER. go install does nothing when the binary is up to date.
oc_build_etcd() {
	# One directory per version of the source, so that checkouts of different
	# versions sharing the cache never run each other's server.
	local src dir
	src=$OC_ROOT/tools/etcd-test-server
	dir=$OC_CACHE/bin/etcd-$(cat "$src"/go.mod "$src"/go.sum "$src"/*.go | sha256sum | cut -c1-12)
	mkdir -p "$dir"
	GOWORK=off GOBIN=$dir go -C "$src" install . ||
		oc_die "building tools/etcd-test-server failed"
	OC_ETCD_SERVER=$dir/etcd-test-server
}

# oc_find_tools sets the paths of the server programs.
oc_find_tools() {
	OC_REDIS_SERVER=$(command -v redis-server) || oc_die "redis-server not found"
	OC_JAVA=$(command -v java) || oc_die "java not found"
	[[ -n ${OC_ETCD_SERVER:-} && -x $OC_ETCD_SERVER ]] || oc_die "the etcd test server is not built (oc_build_etcd)"
}

# oc_free_port VAR sets VAR to a 127.0.0.1 port below the ephemeral range
# that nothing listens on and that this script has not handed out before.
oc_free_port() {
	local p i
	for ((i = 0; i < 500; i++)); do
		p=$((20000 + RANDOM % 12000))
		[[ $OC_USED_PORTS == *" $p "* ]] && continue
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			OC_USED_PORTS+="$p "
			printf -v "$1" '%s' "$p"
			return 0
		fi
	done
	oc_die "found no free port"
}

# oc_alive PID: the process exists and is not a zombie.
oc_alive() {
	local st
	st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	st=${st##*) }
	[[ -n $st && ${st%% *} != Z ]]
}

# oc_owned PID: the process runs inside $OC_STATE, so this script started it.
oc_owned() {
	local cwd
	cwd=$(readlink "/proc/$1/cwd" 2>/dev/null) || return 1
	[[ $cwd == "$OC_STATE"/* ]]
}

# oc_stop_pid NAME PID: TERM, then KILL after 10s, and wait until it is gone.
oc_stop_pid() {
	local name=$1 pid=$2 i
	oc_alive "$pid" || return 0
	if ! oc_owned "$pid"; then
		oc_log "not signalling pid $pid ($name): it is not a process these scripts started"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || return 0
	kill -CONT "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		oc_alive "$pid" || return 0
		sleep 0.1
	done
	oc_log "$name (pid $pid) still running 10s after TERM: sending KILL"
	kill -KILL "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		oc_alive "$pid" || return 0
		sleep 0.1
	done
	oc_log "$name (pid $pid) did not exit"
}

# oc_stop_all stops the servers recorded in $OC_STATE/pids, last started first.
oc_stop_all() {
	local lines=() name pid i
	[[ -n ${OC_STATE:-} && -r $OC_STATE/pids ]] || return 0
	mapfile -t lines <"$OC_STATE/pids"
	for ((i = ${#lines[@]} - 1; i >= 0; i--)); do
		read -r name pid <<<"${lines[i]}"
		[[ -n ${pid:-} ]] && oc_stop_pid "$name" "$pid"
	done
	rm -f "$OC_STATE/pids"
}

# oc_tcp_says PORT REQUEST WANT: sends REQUEST to 127.0.0.1:PORT and succeeds
# when a line of the answer contains WANT (each read waits at most 2s).
oc_tcp_says() {
	(
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf '%s' "$2" >&3 || exit 1
		while IFS= read -r -t 2 line <&3; do
			[[ $line == *"$3"* ]] && exit 0
		done
		exit 1
	) 2>/dev/null
}

oc_redis_ready() { oc_tcp_says "$1" $'PING\r\n' '+PONG'; }
oc_etcd_ready() { grep -qx ready "$1" 2>/dev/null; }
oc_zk_ready() { oc_tcp_says "$1" srvr 'Mode: standalone'; }

# oc_wait NAME PID LOG CHECK ARGS...: waits until CHECK ARGS succeeds; fails
# with the tail of LOG when the server exits or OC_START_TIMEOUT passes.
oc_wait() {
	local name=$1 pid=$2 logf=$3 t0 deadline
	shift 3
	t0=$(oc_ms)
	deadline=$((t0 + OC_START_TIMEOUT * 1000))
	while :; do
		if "$@"; then
			oc_log "$name ready in $(oc_took "$t0") (pid $pid)"
			return 0
		fi
		if ! oc_alive "$pid"; then
			oc_log "$name (pid $pid) exited while starting; last lines of $logf:"
		elif (($(oc_ms) > deadline)); then
			oc_log "$name (pid $pid) not ready after ${OC_START_TIMEOUT}s; last lines of $logf:"
		else
			sleep 0.2
			continue
		fi
		tail -n 40 "$logf" | sed 's/^/    /' >&2
		return 1
	done
}

# oc_record NAME PID
oc_record() { echo "$1 $2" >>"$OC_STATE/pids"; }

oc_start_redis() {
	local dir=$OC_STATE/redis port pid
	oc_free_port port
	mkdir -p "$dir"
	(cd "$dir" && exec "$OC_REDIS_SERVER" --bind 127.0.0.1 --port "$port" --dir "$dir" \
		--appendonly yes --appendfsync always --save '' --daemonize no) </dev/null >>"$dir/server.log" 2>&1 &
	pid=$!
	oc_record redis "$pid"
	oc_wait redis "$pid" "$dir/server.log" oc_redis_ready "$port" || return 1
	OC_REDIS_PORT=$port
}

oc_start_etcd() {
	local dir=$OC_STATE/etcd port peer pid
	oc_free_port port
	oc_free_port peer
	mkdir -p "$dir"
	(cd "$dir" && exec "$OC_ETCD_SERVER" --name oncecron-test --data-dir "$dir/data" \
		--client-addr "127.0.0.1:$port" --peer-addr "127.0.0.1:$peer") \
		</dev/null >"$dir/stdout" 2>>"$dir/server.log" &
	pid=$!
	oc_record etcd "$pid"
	oc_wait etcd "$pid" "$dir/server.log" oc_etcd_ready "$dir/stdout" || return 1
	OC_ETCD_PORT=$port
}

# oc_write_zk_conf DIR PORT writes DIR/zoo.cfg.
# Keep in line with internal/testenv (zookeeper.go).
oc_write_zk_conf() {
	cat >"$1/zoo.cfg" <<EOF
tickTime=500
initLimit=10
syncLimit=5
dataDir=$1/data
clientPortAddress=127.0.0.1
clientPort=$2
maxClientCnxns=0
minSessionTimeout=1000
maxSessionTimeout=60000
admin.enableServer=false
4lw.commands.whitelist=*
EOF
}

# OC_ZK_JVM_OPTS: the JVM options of the ZooKeeper server. The default starts
# fast and small for tests (the first compiler tier only, a 256 MB heap, the
# serial collector); scripts/bench.sh runs it as zkServer.sh does (its 1 GB
# heap, the JVM's own compiler tiers and collector).
OC_ZK_JVM_OPTS=${OC_ZK_JVM_OPTS:--Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1}

oc_start_zookeeper() {
	local dir=$OC_STATE/zookeeper port pid
	oc_free_port port
	mkdir -p "$dir/data"
	oc_write_zk_conf "$dir" "$port"
	# shellcheck disable=SC2086 # OC_ZK_JVM_OPTS is a list of options
	(cd "$dir" && exec "$OC_JAVA" $OC_ZK_JVM_OPTS \
		-Djava.net.preferIPv4Stack=true -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
		-Dorg.slf4j.simpleLogger.showDateTime=true \
		-Dzookeeper.admin.enableServer=false -Dzookeeper.4lw.commands.whitelist='*' \
		-cp "$OC_ZK_CLASSPATH" "$OC_ZK_MAIN" "$dir/zoo.cfg") \
		</dev/null >>"$dir/server.log" 2>&1 &
	pid=$!
	oc_record zookeeper "$pid"
	oc_wait zookeeper "$pid" "$dir/server.log" oc_zk_ready "$port" || return 1
	OC_ZK_PORT=$port
}

# oc_start NAME: starts one server (redis, etcd or zookeeper), trying other
# ports when the one picked was taken meanwhile.
oc_start() {
	local name=$1
	for _ in 1 2 3; do
		"oc_start_$name" && return 0
		oc_stop_named "$name"
		grep -qi 'address already in use' "$OC_STATE/$name/server.log" 2>/dev/null || break
		rm -rf "${OC_STATE:?}/$name"
		oc_log "retrying $name on other ports"
	done
	oc_die "could not start $name"
}

# oc_stop_named NAME stops the recorded servers called NAME.
oc_stop_named() {
	local want=$1 name pid rest=()
	[[ -r $OC_STATE/pids ]] || return 0
	while read -r name pid; do
		if [[ $name == "$want" ]]; then
			oc_stop_pid "$name" "$pid"
		else
			rest+=("$name $pid")
		fi
	done <"$OC_STATE/pids"
	: >"$OC_STATE/pids"
	((${#rest[@]} == 0)) || printf '%s\n' "${rest[@]}" >"$OC_STATE/pids"
}

# oc_start_all starts the three servers under $OC_STATE and writes
# $OC_STATE/env; the caller stops them with oc_stop_all.
oc_start_all() {
	oc_find_tools
	oc_start redis
	oc_start etcd
	oc_start zookeeper
	{
		printf 'export %s=%q\n' \
			ONCECRON_TEST_REDIS "127.0.0.1:$OC_REDIS_PORT" \
			ONCECRON_TEST_ETCD "127.0.0.1:$OC_ETCD_PORT" \
			ONCECRON_TEST_ZK "127.0.0.1:$OC_ZK_PORT" \
			ONCECRON_TEST_REDIS_SERVER "$OC_REDIS_SERVER" \
			ONCECRON_TEST_ETCD_SERVER "$OC_ETCD_SERVER" \
			ONCECRON_TEST_ZK_CLASSPATH "$OC_ZK_CLASSPATH" \
			ONCECRON_TEST_JAVA "$OC_JAVA"
	} >"$OC_STATE/env"
}

# oc_descendants PID prints the PIDs of PID's descendants, children first.
oc_descendants() {
	local f st ppid pid
	for f in /proc/[0-9]*/stat; do
		st=$(cat "$f" 2>/dev/null) || continue
		st=${st##*) }
		read -r _ ppid _ <<<"$st"
		if [[ $ppid == "$1" ]]; then
			pid=${f#/proc/}
			pid=${pid%/stat}
			echo "$pid"
			oc_descendants "$pid"
		fi
	done
}

# oc_cleanup is the EXIT trap of test.sh and bench.sh: it stops their go test
# (gotest_pid) and its processes, the servers they started (OC_STATE), and
# reports the exit code and the time since t_all.
oc_cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	oc_undo_policy
	if [[ -n $gotest_pid ]] && oc_alive "$gotest_pid"; then
		oc_log "stopping go test (pid $gotest_pid) and its processes"
		for p in $gotest_pid $(oc_descendants "$gotest_pid"); do
			kill -TERM "$p" 2>/dev/null || true
		done
		wait "$gotest_pid" 2>/dev/null || true
	fi
	if [[ -n $OC_STATE && -d $OC_STATE ]]; then
		oc_stop_all
		if [[ -n ${ONCECRON_TEST_KEEP:-} ]]; then
			oc_log "kept $OC_STATE"
		else
			rm -rf "$OC_STATE"
		fi
	fi
	# shellcheck disable=SC2154 # t_all is set by the script that traps
	oc_log "exit $rc after $(oc_took "$t_all")"
	exit "$rc"
}
