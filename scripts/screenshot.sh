#!/usr/bin/env bash
# scripts/screenshot.sh [OUT.png] — renders the admin status page of a running
# replica in headless Chromium (Debian's chromium, installed when missing) and
# checks its content: starts one replica on the in-memory backend with the
# default jobs and admin.listen on a free loopback port, waits for a few runs,
# saves a screenshot (default .tmp/status-page.png) and the page's DOM, and
# fails if the DOM lacks the jobs or their runs. Stops what it started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-.tmp/status-page.png}
mkdir -p "$(dirname "$out")"

if ! command -v chromium >/dev/null 2>&1; then
	echo "screenshot.sh: installing chromium" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

tmp=$(mktemp -d)
pid=""
cleanup() {
	if [ -n "$pid" ]; then
		# shellcheck disable=SC2015 # either step may fail: the server is gone
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

OC_PROG=screenshot.sh
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
oc_free_port port
sed "s|^# admin:|admin:|; s|^#   listen: \"127.0.0.1:9090\".*|  listen: \"127.0.0.1:$port\"|" config/jobs.yaml > "$tmp/jobs.yaml"
go build -o "$tmp/scheduler" ./cmd/scheduler
"$tmp/scheduler" run --config "$tmp/jobs.yaml" --replica screenshot --log-format console >"$tmp/replica.log" 2>&1 &
pid=$!
url="http://127.0.0.1:$port/"
for _ in $(seq 1 100); do
	curl -fsS "$url/healthz" >/dev/null 2>&1 && break
	sleep 0.1
done
sleep 7 # a few runs of the demo jobs

# shellcheck disable=SC2054 # the comma is part of --window-size's value
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
	--disable-component-update --disable-sync --user-data-dir="$tmp/chrome" --window-size=1280,1000)
chromium "${flags[@]}" --screenshot="$PWD/$out" "$url" >/dev/null 2>&1
chromium "${flags[@]}" --dump-dom "$url" >"$tmp/dom.html" 2>/dev/null
for want in "demo" "hello" "succeeded" "screenshot"; do
	grep -q "$want" "$tmp/dom.html" || { echo "screenshot.sh: the rendered page lacks \"$want\"" >&2; exit 1; }
done
echo "screenshot.sh: $out (page checked: jobs, runs and replica name present)"
