#!/usr/bin/env bash
# End-to-end load benchmark: Ferry and (when available) vmagent 1.79 from
# Debian, each receiving the same remote-write load from ferry-load and
# forwarding to ferry-load's own receiver on this machine.
#
#   cmd/ferry-load/bench-e2e.sh            # needs bin/ferry, bin/ferry-load (make build)
#   DURATION=30s RATES=500000 cmd/ferry-load/bench-e2e.sh
#   PROTOS="1.0 2.0" VMAGENT=0 cmd/ferry-load/bench-e2e.sh   # Ferry ingesting Remote-Write 1.0 and 2.0
#   SHAPES="A B" SYNCS=always RATES=0 RUNS=3 cmd/ferry-load/bench-e2e.sh   # both load shapes, medians of 3
#   ENDPOINTS=4 VMAGENT=0 cmd/ferry-load/bench-e2e.sh   # Ferry forwarding to 4 endpoints (the sink counts each copy)
#   SHAPES=A1M SYNCS=always RATES=500000 cmd/ferry-load/bench-e2e.sh   # a million series
#   SCENARIO=churn cmd/ferry-load/bench-e2e.sh         # an hour of series churn (see below)
#   SCENARIO=churn CHURN_DURATION=3m CHURN_SVG=/tmp/churn.svg cmd/ferry-load/bench-e2e.sh   # smoke test
#
# SHAPES are ferry-load's --shape values: B (the default) is 100k series,
# 1,000 per request, 4 clients; A is 50k series of 9-10 Kubernetes labels,
# 500 per request, 8 clients, and is defined with wal.sync: always
# (SYNCS=always); A1M is A with 1M series. SERIES, BATCH and CONC, when set,
# override the shape's.
#
# Each agent configuration is run RUNS times, each time freshly started. The
# script prints one JSON line per run (ferry-load --json) prefixed with its
# name, rate, shape and run, then one line per configuration starting with
# "median": the median CPU-s per million samples and acked samples/s.
#
# SCENARIO=churn measures Ferry alone under series churn: wal.sync: always,
# a raw endpoint (ferry-load's receiver, verifying every sample) and a
# second endpoint with a 5m storage policy (rollups), whose sink only
# counts. The load is 100,000 series of shape A, 10% of them replaced by new
# ones every minute (new pod names), at 10,000 samples/s with a 10s step,
# so that synthetic time runs at wall speed, for CHURN_DURATION (60m).
# Ferry's RSS is logged and drawn to CHURN_SVG (docs/churn-rss.svg), and
# ferry-load compares its peaks in the first and last third after a warm-up
# of a sixth of the run. After the drain the script records the size of the
# WAL's checkpoints and Ferry's series metrics, then restarts Ferry on the
# same data and times it until /-/ready answers. It prints ferry-load's
# JSON ("churn-load"), the metrics ("metric") and one line starting with
# "churn" with the key figures.
#
# FERRY_BIN (./bin/ferry) is the Ferry binary to run.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-30s}
SHAPES=${SHAPES:-"B"}
RUNS=${RUNS:-1}
SERIES=${SERIES:-}           # empty: the shape's
BATCH=${BATCH:-}
CONC=${CONC:-}
RATES=${RATES:-"0 500000"}   # 0 = as fast as acknowledged
SYNCS=${SYNCS:-"always interval"}
PROTOS=${PROTOS:-"1.0"}      # Remote-Write versions pushed at Ferry (vmagent gets 1.0)
VMAGENT=${VMAGENT:-1}        # 0 skips vmagent
ENDPOINTS=${ENDPOINTS:-1}    # Ferry forwards to this many endpoints (all to the one sink)
SCENARIO=${SCENARIO:-load}   # load or churn
CHURN_DURATION=${CHURN_DURATION:-60m}
CHURN_SVG=${CHURN_SVG:-docs/churn-rss.svg}
FERRY_BIN=${FERRY_BIN:-./bin/ferry}
WORK=$(mktemp -d /tmp/ferry-bench.XXXXXX)
trap 'pkill -P $$ 2>/dev/null || true; rm -rf "$WORK"' EXIT

vmagent_bin() {
  if command -v vmagent >/dev/null; then command -v vmagent; return; fi
  local cache=${VMAGENT_CACHE:-$HOME/.cache/ferry-bench}
  if [ ! -x "$cache/usr/bin/vmagent" ]; then
    mkdir -p "$cache"
    (cd "$cache" && apt-get download victoria-metrics >/dev/null 2>&1 && dpkg -x victoria-metrics_*.deb .) || return 1
  fi
  echo "$cache/usr/bin/vmagent"
}

wait_http() { for _ in $(seq 200); do curl -sf "$1" >/dev/null && return 0; sleep 0.05; done; echo "not up: $1" >&2; return 1; }

load() { # name pid rate proto run; uses $TARGET and $shape
  local args=(--target "$TARGET" --shape "$shape" --duration "$DURATION" --rate "$3" --pid "$2"
    --proto "$4" --progress 0 --json)
  if [ -n "$SERIES" ]; then args+=(--series "$SERIES"); fi
  if [ -n "$BATCH" ]; then args+=(--batch "$BATCH"); fi
  if [ -n "$CONC" ]; then args+=(--concurrency "$CONC"); fi
  local out
  if ! out=$(./bin/ferry-load "${args[@]}" 2>"$WORK/load.err"); then
    echo "$1: ferry-load failed:" >&2
    cat "$WORK/load.err" >&2
    return 1
  fi
  echo "$1 rate=$3 shape=$shape run=$5 $out"
  echo "$out" >>"$WORK/runs"
}

# field NAME prints the value of the numeric JSON field NAME of each line of
# stdin; lines where it is null give nothing.
field() { sed -n "s/.*\"$1\":\([-0-9.eE+]*\)[,}].*/\1/p"; }

# median FORMAT prints the median of the numbers on stdin (the mean of the
# middle two for an even count), or n/a if there are none.
median() {
  sort -g | awk -v f="$1\n" '{ v[NR] = $1 }
    END { if (NR == 0) print "n/a"; else if (NR % 2) printf f, v[(NR + 1) / 2]; else printf f, (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

report() { # name rate: the median line of the runs in $WORK/runs
  local n cpu acked
  n=$(wc -l <"$WORK/runs")
  cpu=$(field cpu_seconds_per_million <"$WORK/runs" | median %.3f)
  acked=$(field acked_per_second <"$WORK/runs" | median %.1f)
  echo "median $1 rate=$2 shape=$shape runs=$n cpu_seconds_per_million=$cpu acked_per_second=$acked"
  rm -f "$WORK/runs"
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
status() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; } # pid field: kB
metric() { # name: the sum of a metric's samples in Ferry's /metrics
  curl -s http://127.0.0.1:9201/metrics | awk -v m="$1" '$1 ~ "^"m"({|$)" { s += $2 } END { printf "%.0f\n", s }'
}
mib() { awk -v b="$1" 'BEGIN { if (b == "") print "n/a"; else printf "%.1f", b / 1048576 }'; }

# seconds DURATION prints a duration such as 90s, 3m or 1h in seconds.
seconds() {
  local n=${1%[smh]}
  if ! [[ $n =~ ^[0-9]+$ ]]; then echo "bad duration $1 (want Ns, Nm or Nh)" >&2; return 1; fi
  case $1 in
    *h) echo $((n * 3600)) ;;
    *m) echo $((n * 60)) ;;
    *) echo "$n" ;;
  esac
}

# wait_ready URL waits, polling every 5 ms for up to 10 minutes, until URL
# answers 200.
wait_ready() {
  local deadline=$((SECONDS + 600))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "not ready: $1" >&2; return 1; fi
    sleep 0.005
  done
}

scenario_churn() {
  local dir=$WORK/churn secs pid sink out
  secs=$(seconds "$CHURN_DURATION")
  mkdir -p "$dir"
  cat > "$dir/ferry.yml" <<YAML
listen_address: 127.0.0.1:9201
data_dir: $dir/data
wal: {sync: always}
remote_write:
  - name: raw
    url: http://127.0.0.1:19291/api/v1/write
  - name: rollup5m
    url: http://127.0.0.1:19292/api/v1/write
    storage_policy:
      resolution: 5m
      retention: 24h
downsample:
  max_delay: 1m
YAML
  "$FERRY_BIN" check config "$dir/ferry.yml" >/dev/null
  ./bin/ferry-load --receiver-only --receiver.listen 127.0.0.1:19292 >"$dir/rollup-sink.out" 2>&1 &
  sink=$!
  "$FERRY_BIN" run --config "$dir/ferry.yml" --log.level warn 2>"$dir/ferry.log" &
  pid=$!
  wait_http http://127.0.0.1:9201/-/ready

  if ! out=$(./bin/ferry-load --target http://127.0.0.1:9201/api/v1/write --shape A --series 100000 \
      --churn 0.1 --churn-every 1m --ts-step 10s --rate 10000 --duration "$CHURN_DURATION" \
      --warmup "$((secs / 6))s" --verify --pid "$pid" --rss-log "$dir/rss.log" --rss-svg "$CHURN_SVG" \
      --rss-title "Ferry under churn: 100k series, 10% replaced every minute, $CHURN_DURATION" \
      --progress 60s --json); then
    echo "churn: ferry-load failed; Ferry's log:" >&2
    cat "$dir/ferry.log" >&2
    return 1
  fi
  echo "churn-load $out"

  # After the drain: the WAL's checkpoints and Ferry's series metrics.
  local ckpt=0 d
  for d in "$dir"/data/wal/checkpoint.*; do
    if [ -d "$d" ]; then ckpt=$((ckpt + $(du -sb "$d" | cut -f1))); fi
  done
  curl -s http://127.0.0.1:9201/metrics |
    grep '^ferry_wal_\|^ferry_downsample_\|^ferry_sender_samples_dropped' >"$dir/metrics" || true
  grep -E '^(ferry_wal_series|ferry_wal_series_(created|removed)_total|ferry_wal_checkpoint_series_written_total|ferry_wal_size_bytes|ferry_downsample_series|ferry_downsample_rollup_series_(freed|released)_total|ferry_sender_samples_dropped_total)[{ ]' \
    "$dir/metrics" | sed 's/^/metric /' || true
  local wal_series removed freed released ds_series cp_written dropped rss_before
  wal_series=$(metric ferry_wal_series)
  removed=$(metric ferry_wal_series_removed_total)
  cp_written=$(metric ferry_wal_checkpoint_series_written_total)
  freed=$(metric ferry_downsample_rollup_series_freed_total)
  released=$(metric ferry_downsample_rollup_series_released_total)
  ds_series=$(metric ferry_downsample_series)
  dropped=$(metric ferry_sender_samples_dropped_total)
  rss_before=$(status "$pid" VmRSS)

  # Restart on the same data, timed until ready.
  kill "$pid"; wait "$pid" || true
  local t0 t1 rss_after
  t0=$(now)
  "$FERRY_BIN" run --config "$dir/ferry.yml" --log.level warn 2>>"$dir/ferry.log" &
  pid=$!
  wait_ready http://127.0.0.1:9201/-/ready
  t1=$(now)
  rss_after=$(status "$pid" VmRSS)
  kill "$pid"; wait "$pid" || true
  kill "$sink"; wait "$sink" || true
  local rollups
  rollups=$(sed -n 's/^total: .* samples=\([0-9]*\).*/\1/p' "$dir/rollup-sink.out")

  f() { echo "$out" | field "$1"; } # a field of ferry-load's JSON
  echo "churn duration=$CHURN_DURATION series=100000 churn=0.1/1m series_created=$(f series_created)" \
    "acked=$(f acked_samples) delivered=$(f delivered_samples) missing=$(f verify_missing)" \
    "wrong_generation=$(f verify_wrong_generation) foreign=$(f verify_foreign) out_of_order=$(f verify_out_of_order)" \
    "cpu_seconds_per_million=$(f cpu_seconds_per_million) peak_rss_mib=$(mib "$(f peak_rss_bytes)")" \
    "rss_first_third_mib=$(mib "$(f rss_first_third_bytes)") rss_last_third_mib=$(mib "$(f rss_last_third_bytes)")" \
    "rss_flat_ratio=$(f rss_flat_ratio) rss_before_stop_mib=$(mib $((rss_before * 1024)))" \
    "wal_checkpoint_bytes=$ckpt wal_checkpoint_series_written=$cp_written wal_series=$wal_series wal_series_removed=$removed" \
    "downsample_series=$ds_series rollup_series_released=$released rollup_series_freed=$freed samples_dropped=$dropped rollup_samples_received=${rollups:-n/a}" \
    "restart_ready_seconds=$(elapsed "$t0" "$t1") rss_after_restart_mib=$(mib $((rss_after * 1024))) svg=$CHURN_SVG"
}

case $SCENARIO in
  load) ;;
  churn) scenario_churn; exit ;;
  *) echo "SCENARIO=$SCENARIO: must be load or churn" >&2; exit 2 ;;
esac

for shape in $SHAPES; do
 for rate in $RATES; do
  for sync in $SYNCS; do
   for proto in $PROTOS; do
    name="ferry(sync=$sync,proto=$proto,endpoints=$ENDPOINTS)"
    for run in $(seq "$RUNS"); do
      mkdir -p "$WORK/ferry"
      cat > "$WORK/ferry/ferry.yml" <<YAML
listen_address: 127.0.0.1:9201
data_dir: $WORK/ferry/data
wal: {sync: $sync}
remote_write:
YAML
      for k in $(seq "$ENDPOINTS"); do
        printf '  - name: sink%d\n    url: http://127.0.0.1:19291/api/v1/write\n' "$k" >> "$WORK/ferry/ferry.yml"
      done
      "$FERRY_BIN" run --config "$WORK/ferry/ferry.yml" --log.level warn 2>"$WORK/ferry/log" &
      pid=$!
      wait_http http://127.0.0.1:9201/-/ready
      TARGET=http://127.0.0.1:9201/api/v1/write load "$name" "$pid" "$rate" "$proto" "$run"
      kill "$pid"; wait "$pid" || true
      rm -rf "$WORK/ferry"
    done
    report "$name" "$rate"
   done
  done

  # vmagent, with its on-disk queue.
  if [ "$VMAGENT" = 1 ] && vm=$(vmagent_bin); then
    for run in $(seq "$RUNS"); do
      "$vm" -httpListenAddr=127.0.0.1:8429 -remoteWrite.url=http://127.0.0.1:19291/api/v1/write \
        -remoteWrite.tmpDataPath="$WORK/vmagent" -loggerLevel=ERROR >"$WORK/vmagent.log" 2>&1 &
      pid=$!
      wait_http http://127.0.0.1:8429/health
      TARGET=http://127.0.0.1:8429/api/v1/write load vmagent "$pid" "$rate" 1.0 "$run"
      kill "$pid"; wait "$pid" || true
      rm -rf "$WORK/vmagent"
    done
    report vmagent "$rate"
  elif [ "$VMAGENT" = 1 ]; then
    echo "vmagent not available (apt-get download victoria-metrics failed); skipped" >&2
  fi
 done
done
