#!/usr/bin/env bash
# Starts a local Rookery cluster on 127.0.0.1 for manual testing: N worker
# processes and one gateway that routes embeddings to them over CAF.
#
#   deploy/local-cluster.sh [options] [-- extra `rookery serve` flags for every node]
#
# Options (each also settable through the environment variable in brackets):
#   -n N      number of workers                         [WORKERS, default 2]
#   -p PORT   gateway HTTP port (0 picks a free one)    [GATEWAY_PORT, default 8080]
#   -c PORT   first worker cluster (CAF) port; worker i
#             publishes on PORT+i-1                     [CLUSTER_PORT, default 4242]
#   -d DIR    data and log directory; kept on exit      [CLUSTER_DIR, default: a new
#             temporary directory, removed on exit unless KEEP=1]
#   -t SECS   how long to wait for each node to start   [START_TIMEOUT, default 180]
#
#   ROOKERY_BIN   the binary (default build/rookery in the repository)
#   ROOKERY_*     every other ROOKERY_* variable reaches every node as usual
#                 (e.g. ROOKERY_TORCH_THREADS=1, ROOKERY_PASSWORD_HASH_COST=min)
#
# Workers listen for HTTP on a free port (their own /healthz, /readyz,
# /metrics); the gateway listens on 127.0.0.1:GATEWAY_PORT. Logs go to
# DIR/<node>.log. Ctrl-C or SIGTERM stops every node. A worker that dies is
# reported and the others keep serving; when the gateway dies, everything stops.
# Started with `&` from another script, stop it with SIGTERM: bash makes such
# background jobs ignore SIGINT, and an ignored signal cannot be trapped.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${ROOKERY_BIN:-$repo/build/rookery}"
workers="${WORKERS:-2}"
gateway_port="${GATEWAY_PORT:-8080}"
cluster_port="${CLUSTER_PORT:-4242}"
dir="${CLUSTER_DIR:-}"
start_timeout="${START_TIMEOUT:-180}"
host=127.0.0.1

usage() { sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while getopts "n:p:c:d:t:h" opt; do
  case "$opt" in
    n) workers="$OPTARG" ;;
    p) gateway_port="$OPTARG" ;;
    c) cluster_port="$OPTARG" ;;
    d) dir="$OPTARG" ;;
    t) start_timeout="$OPTARG" ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift
extra=("$@")

for v in workers gateway_port cluster_port start_timeout; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "local-cluster: $v must be a number, got '${!v}'" >&2; exit 2; }
done
((workers >= 1)) || { echo "local-cluster: at least one worker is needed" >&2; exit 2; }
((cluster_port + workers - 1 <= 65535)) || { echo "local-cluster: cluster ports out of range" >&2; exit 2; }
[ -x "$bin" ] || { echo "local-cluster: no binary at $bin (build it, or set ROOKERY_BIN)" >&2; exit 2; }

remove_dir=0
if [ -z "$dir" ]; then
  dir="$(mktemp -d "${TMPDIR:-/tmp}/rookery-cluster.XXXXXX")"
  [ "${KEEP:-0}" = 1 ] || remove_dir=1
fi
mkdir -p "$dir"

names=()  # node names, in start order
pids=()   # their process ids
stopping=0

stop_all() {
  ((stopping)) && return
  stopping=1
  trap - INT TERM
  echo "local-cluster: stopping"
  # The gateway first, so it stops taking requests before its workers go.
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
  done
  local deadline=$((SECONDS + 15))
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    while kill -0 "${pids[i]}" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "${pids[i]}" 2>/dev/null; then
      echo "local-cluster: ${names[i]} (pid ${pids[i]}) ignored SIGTERM; killing it" >&2
      kill -KILL "${pids[i]}" 2>/dev/null || true
    fi
    wait "${pids[i]}" 2>/dev/null || true
  done
  if ((remove_dir)); then
    rm -rf "$dir"
  else
    echo "local-cluster: data and logs kept in $dir"
  fi
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap 'stop_all' EXIT

# start NAME ARGS...: starts a node with its output in $dir/NAME.log, waits for
# its "listening on http://HOST:PORT" line and sets $url.
start() {
  local name="$1"; shift
  local log="$dir/$name.log"
  : >"$log"
  "$bin" serve "$@" "${extra[@]}" >"$log" 2>&1 &
  local pid=$!
  names+=("$name"); pids+=("$pid")
  local deadline=$((SECONDS + start_timeout)) line=""
  while :; do
    line="$(grep -m1 -o 'listening on http://[^ ]*' "$log" || true)"
    [ -n "$line" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "local-cluster: $name exited before listening; the end of $log:" >&2
      tail -n 20 "$log" >&2
      remove_dir=0 # keep the logs
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      echo "local-cluster: $name did not listen within ${start_timeout}s; the end of $log:" >&2
      tail -n 20 "$log" >&2
      remove_dir=0
      exit 1
    fi
    sleep 0.2
  done
  url="${line#listening on }"
}

seeds=()
worker_urls=()
for ((i = 1; i <= workers; i++)); do
  cport=$((cluster_port + i - 1))
  start "worker-$i" --role worker --host "$host" --port 0 \
    --cluster-host "$host" --cluster-port "$cport" --data "$dir/worker-$i"
  seeds+=("$host:$cport")
  worker_urls+=("$url")
  echo "local-cluster: worker-$i  pid ${pids[-1]}  http $url  cluster $host:$cport"
done

seed_list="$(IFS=,; echo "${seeds[*]}")"
start gateway --role gateway --host "$host" --port "$gateway_port" \
  --seeds "$seed_list" --data "$dir/gateway"
gateway_url="$url"
echo "local-cluster: gateway   pid ${pids[-1]}  http $gateway_url  seeds $seed_list"

# The gateway answers /readyz with 200 once it reaches a worker with a ready pipeline.
deadline=$((SECONDS + start_timeout))
until curl -fsS -o /dev/null "$gateway_url/readyz" 2>/dev/null; do
  if ((SECONDS >= deadline)); then
    echo "local-cluster: warning: the gateway is not ready after ${start_timeout}s (see $dir/gateway.log)" >&2
    break
  fi
  sleep 0.3
done

cat <<EOF

Rookery local cluster is up.
  gateway:  $gateway_url   (API, /healthz, /readyz, /metrics)
$(for ((i = 0; i < workers; i++)); do echo "  worker-$((i + 1)): ${worker_urls[i]}   (cluster ${seeds[i]})"; done)
  data and logs: $dir   (logs: $dir/<node>.log)
  process ids: $(for ((i = 0; i < ${#pids[@]}; i++)); do printf '%s=%s ' "${names[i]}" "${pids[i]}"; done)

Try:
  curl -s -XPOST $gateway_url/v1/users -d '{"username":"ada","password":"a long password"}'
  TOKEN=\$(curl -s -XPOST $gateway_url/v1/auth/login -d '{"username":"ada","password":"a long password"}' | jq -r .token)
  curl -s -XPOST $gateway_url/v1/embed -H "Authorization: Bearer \$TOKEN" --data-binary @cat.jpg
Ctrl-C stops every node.
EOF

# Watch the nodes: report each that exits; stop everything when the gateway does.
gateway_pid="${pids[-1]}"
declare -A reported=()
while :; do
  live=()
  for p in "${pids[@]}"; do [ -z "${reported[$p]:-}" ] && live+=("$p"); done
  wait -n "${live[@]}" 2>/dev/null || true
  for ((i = 0; i < ${#pids[@]}; i++)); do
    p="${pids[i]}"
    if [ -z "${reported[$p]:-}" ] && ! kill -0 "$p" 2>/dev/null; then
      reported[$p]=1
      echo "local-cluster: ${names[i]} (pid $p) exited; the end of $dir/${names[i]}.log:" >&2
      tail -n 5 "$dir/${names[i]}.log" >&2
    fi
  done
  if [ -n "${reported[$gateway_pid]:-}" ]; then
    echo "local-cluster: the gateway is gone" >&2
    remove_dir=0
    exit 1
  fi
done
