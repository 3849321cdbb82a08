#!/usr/bin/env bash
# Run one c1m load from many hosts over ssh, no coordinator: host i of the
# hosts file (0-based, in file order) runs `c1m-daemon load --shard i/N`
# with the arguments given here, all at once; the script waits for every
# host and says which succeeded.
#
#   deploy/ssh/load-fanout.sh HOSTS_FILE --target 10.0.0.10:7007 \
#       --connections 400000 --hold 5m [--metrics 0.0.0.0:9809] [...]
#
# HOSTS_FILE: one ssh destination per line (`user@host`, or a name from
# ~/.ssh/config); blank lines and lines starting with # are skipped.
# Each host's JSON lines (`load --json`: progress, ramped, done, each with
# its shard) go to $C1M_LOG_DIR/<i>-<host>.jsonl, its stderr beside them.
#
# Environment:
#   C1M_SSH         the transport, called as `$C1M_SSH HOST COMMAND`
#                   (default: ssh -n -o BatchMode=yes)
#   C1M_REMOTE_BIN  c1m-daemon on the hosts (default: c1m-daemon)
#   C1M_LOG_DIR     where the logs go (default: ./c1m-load-logs)
#
# Exit code: 0 when every host's load exited 0, else 1 (4 from a host is
# a load that stopped short of its share: read its done line).
set -euo pipefail

usage() {
    echo "usage: $0 HOSTS_FILE LOAD_ARGS... (e.g. --target ADDR --connections N)" >&2
    exit 2
}

[ "$#" -ge 1 ] || usage
hosts_file=$1
shift
[ -r "$hosts_file" ] || { echo "$0: cannot read hosts file $hosts_file" >&2; exit 2; }
for arg in "$@"; do
    case $arg in
        --shard|--shard=*) echo "$0: do not pass --shard: each host gets its own" >&2; exit 2 ;;
    esac
done

hosts=()
while IFS= read -r line || [ -n "$line" ]; do
    line=${line%%#*}
    line=$(printf '%s' "$line" | tr -d '[:space:]')
    [ -n "$line" ] && hosts+=("$line")
done < "$hosts_file"
count=${#hosts[@]}
[ "$count" -gt 0 ] || { echo "$0: no hosts in $hosts_file" >&2; exit 2; }

read -r -a transport <<< "${C1M_SSH:-ssh -n -o BatchMode=yes}"
remote_bin=${C1M_REMOTE_BIN:-c1m-daemon}
log_dir=${C1M_LOG_DIR:-./c1m-load-logs}
mkdir -p "$log_dir"

# The remote command, quoted for the remote shell.
quoted_args=$(printf '%q ' "$@")

pids=()
for i in "${!hosts[@]}"; do
    host=${hosts[$i]}
    remote="$(printf '%q' "$remote_bin") load --shard $i/$count --json $quoted_args"
    log="$log_dir/$i-$host"
    echo "shard $i/$count on $host: $remote" >&2
    "${transport[@]}" "$host" "$remote" > "$log.jsonl" 2> "$log.err" &
    pids+=("$!")
done

failed=0
for i in "${!hosts[@]}"; do
    code=0
    wait "${pids[$i]}" || code=$?
    if [ "$code" -eq 0 ]; then
        echo "shard $i/$count on ${hosts[$i]}: done ($log_dir/$i-${hosts[$i]}.jsonl)"
    else
        failed=$((failed + 1))
        echo "shard $i/$count on ${hosts[$i]}: exit $code (see $log_dir/$i-${hosts[$i]}.err)"
    fi
done
echo "$((count - failed)) of $count shards succeeded"
[ "$failed" -eq 0 ]
