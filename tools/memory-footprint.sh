#!/usr/bin/env bash
# memory-footprint.sh: the exporter's memory with the DaemonSet's arguments,
# the numbers behind the memory requests and limits in deploy/kubernetes.
# Runs ./memlock_exporter (make build) with the base's and the overlay's
# flags on loopback, scrapes each 40 times (the overlay probing every 5 s),
# and prints the exporter's VmHWM (peak resident set, file pages of the
# binary included) and, on cgroup v1, the peak charge of a memory cgroup
# made for it. Needs root (cgroup, and CAP_IPC_LOCK for the probes).
#   make build && tools/memory-footprint.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=./memlock_exporter
[ -x "$bin" ] || { echo "run make build first" >&2; exit 1; }

measure() {
	local name=$1 port=$2; shift 2
	local cg=/sys/fs/cgroup/memory/memlock-footprint-$name
	mkdir -p "$cg" 2>/dev/null || cg=
	sh -c "${cg:+echo \$\$ > $cg/cgroup.procs;} exec $bin --web.listen-address=127.0.0.1:$port $*" >/dev/null 2>&1 &
	local pid=$!
	sleep 2
	for _ in $(seq 30); do curl -s -o /dev/null "http://127.0.0.1:$port/metrics"; sleep 0.5; done
	sleep 8
	for _ in $(seq 10); do curl -s -o /dev/null "http://127.0.0.1:$port/metrics"; done
	local hwm
	hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
	printf '%-8s processes=%d VmHWM=%.1f MiB' "$name" "$(ls /proc | grep -c '^[0-9]')" "$(echo "$hwm/1024" | bc -l)"
	[ -n "$cg" ] && printf ' cgroup peak=%.1f MiB' "$(echo "$(cat "$cg/memory.max_usage_in_bytes")/1048576" | bc -l)"
	echo
	kill "$pid"; wait "$pid" 2>/dev/null || true
	[ -n "$cg" ] && { sleep 0.5; rmdir "$cg"; }
}

measure base 19947 --no-collector.process.smaps
measure overlay 19948 --collector.process.smaps --probe.enable --probe.interval=5s \
	--probe.modes=mlock,onfault,populate,mlockall --probe.size=4MiB --probe.max-bytes=16MiB
