#!/usr/bin/env bash
# Recovery benchmarks of Ferry (see docs/benchmarks.md):
#
#   drain:   with the only endpoint down, push at RATE samples/s for OUTAGE;
#            then start the endpoint (the load going on) and time until
#            Ferry reports sent (ferry_sender_samples_sent_total, polled
#            every 50 ms) every sample it had acknowledged by then.
#   restart: with the endpoint down, push until the WAL holds WAL_MB MiB,
#            stop Ferry (SIGTERM), start it again on the same data and time
#            until /-/ready answers; report RSS before the stop and the peak
#            RSS (VmHWM) of the restarted process when it became ready.
#
#   make build && cmd/ferry-load/bench-recovery.sh            # both
#   WHAT=drain RATE=50000 OUTAGE=60s cmd/ferry-load/bench-recovery.sh
#   WHAT=restart WAL_MB=1024 cmd/ferry-load/bench-recovery.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

WHAT=${WHAT:-"drain restart"}
RATE=${RATE:-50000}
OUTAGE=${OUTAGE:-60s}
WAL_MB=${WAL_MB:-1024}
SHAPE=${SHAPE:-B}
WORK=$(mktemp -d /tmp/ferry-recovery.XXXXXX)
trap 'pkill -P $$ 2>/dev/null || true; rm -rf "$WORK"' EXIT

now() { date +%s.%N; }
wait_http() { for _ in $(seq 2000); do curl -sf "$1" >/dev/null && return 0; sleep 0.005; done; echo "not up: $1" >&2; return 1; }
metric() { # name: the sum of a metric's samples in Ferry's /metrics
  curl -s http://127.0.0.1:9201/metrics | awk -v m="$1" '$1 ~ "^"m"({|$)" { s += $2 } END { printf "%.0f\n", s }'
}
status() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; } # pid field: kB

cat > "$WORK/ferry.yml" <<YAML
listen_address: 127.0.0.1:9201
data_dir: $WORK/data
wal: {sync: always}
remote_write:
  - name: sink
    url: http://127.0.0.1:19292/api/v1/write
YAML

start_ferry() {
  ./bin/ferry run --config "$WORK/ferry.yml" --log.level warn 2>>"$WORK/ferry.log" &
  FERRY=$!
}

if [[ " $WHAT " == *" drain "* ]]; then
  rm -rf "$WORK/data"
  start_ferry
  wait_http http://127.0.0.1:9201/-/ready
  # The load goes on after the endpoint returns, as it would: the backlog
  # is drained when everything acknowledged up to the endpoint's return
  # has been sent.
  outage_s=${OUTAGE%s}
  ./bin/ferry-load --target http://127.0.0.1:9201/api/v1/write --no-receiver --shape "$SHAPE" \
    --rate "$RATE" --duration "$((outage_s + 15))s" --progress 0 --json >"$WORK/push.json" 2>/dev/null &
  load=$!
  sleep "$outage_s"
  ./bin/ferry-load --receiver-only --receiver.listen 127.0.0.1:19292 >/dev/null 2>&1 &
  recv=$!
  t0=$(now)
  backlog=$(metric ferry_receiver_samples_total)
  first=
  while :; do
    sent=$(metric ferry_sender_samples_sent_total)
    if [ -z "$first" ] && [ "$sent" -gt 0 ]; then first=$(now); fi
    [ "$sent" -lt "$backlog" ] || break
    if [ -n "${TRACE:-}" ]; then echo "$(now) sent=$sent shards=$(metric ferry_sender_shards)"; fi
    sleep 0.05
  done
  t1=$(now)
  echo "drain: $backlog samples acknowledged during a $OUTAGE outage at $RATE/s (the load going on); first sent $(awk -v a="$t0" -v b="$first" 'BEGIN { printf "%.2f", b - a }') s and all of them $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s after the endpoint came up"
  wait "$load"
  kill "$FERRY" "$recv"; wait "$FERRY" "$recv" 2>/dev/null || true
fi

if [[ " $WHAT " == *" restart "* ]]; then
  rm -rf "$WORK/data"
  start_ferry
  wait_http http://127.0.0.1:9201/-/ready
  ./bin/ferry-load --target http://127.0.0.1:9201/api/v1/write --no-receiver --shape "$SHAPE" \
    --duration 0 --samples $((WAL_MB * 1024 * 1024 / 12)) --progress 0 --json >"$WORK/push.json"
  wal_mb=$(du -sm "$WORK/data/wal" | cut -f1)
  rss=$(status "$FERRY" VmRSS)
  kill "$FERRY"; wait "$FERRY" || true
  t0=$(now)
  start_ferry
  wait_http http://127.0.0.1:9201/-/ready
  t1=$(now)
  hwm=$(status "$FERRY" VmHWM)
  series=$(metric ferry_wal_series)
  echo "restart: WAL ${wal_mb} MiB, ${series} series; ready $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s after start; RSS before stop $((rss / 1024)) MiB, peak RSS of the restarted process at ready $((hwm / 1024)) MiB"
  kill "$FERRY"; wait "$FERRY" || true
fi
