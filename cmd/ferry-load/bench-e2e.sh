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
#
# SHAPES are ferry-load's --shape values: B (the default) is 100k series,
# 1,000 per request, 4 clients; A is 50k series of 9-10 Kubernetes labels,
# 500 per request, 8 clients, and is defined with wal.sync: always
# (SYNCS=always). SERIES, BATCH and CONC, when set, override the shape's.
#
# Each agent configuration is run RUNS times, each time freshly started. The
# script prints one JSON line per run (ferry-load --json) prefixed with its
# name, rate, shape and run, then one line per configuration starting with
# "median": the median CPU-s per million samples and acked samples/s.
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
      ./bin/ferry run --config "$WORK/ferry/ferry.yml" --log.level warn 2>"$WORK/ferry/log" &
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
