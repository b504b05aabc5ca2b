#!/usr/bin/env bash
# Scrape benchmark: Ferry, the Prometheus 2.42 agent and vmagent 1.79 (both
# from Debian) scrape the same simulated targets (ferry-targets) at the same
# time, each through file_sd, and remote-write to its own ferry-load
# --receiver-only sink. After WARMUP, each process's CPU and RSS is sampled
# every 5 s for DURATION.
#
#   make build && cmd/ferry-targets/bench-scrape.sh        # needs bin/ferry
#   FERRY=0 WARMUP=30s DURATION=1m cmd/ferry-targets/bench-scrape.sh
#
# Prints one row per process (CPU seconds over the window, average cores,
# average and maximum RSS, up targets, samples/s delivered to its sink) and
# Ferry's CPU and RSS ratios to the others.
set -euo pipefail
cd "$(dirname "$0")/../.."

TARGETS=${TARGETS:-1000}
SERIES=${SERIES:-200}
INTERVAL=${INTERVAL:-15s}
DURATION=${DURATION:-5m}
WARMUP=${WARMUP:-1m}
FERRY=${FERRY:-1}     # 0 skips Ferry
FERRY_BIN=${FERRY_BIN:-bin/ferry}
SYNC=${SYNC:-always}  # Ferry's wal.sync: always (fsync each scrape) or interval
BASE_PORT=${BASE_PORT:-20000}
STEP=5                # seconds between samples

FERRY_ADDR=127.0.0.1:9201  PROM_ADDR=127.0.0.1:19090  VM_ADDR=127.0.0.1:18429
FERRY_SINK=19291           PROM_SINK=19292            VM_SINK=19293

WORK=$(mktemp -d /tmp/ferry-scrape.XXXXXX)
PIDS=()
cleanup() { # newest first: scrapers flush to their sinks as they stop
  for (( i = ${#PIDS[@]} - 1; i >= 0; i-- )); do kill "${PIDS[i]}" 2>/dev/null && wait "${PIDS[i]}" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
pause() { sleep "$1" & wait $!; } # a signal interrupts wait, not sleep
ulimit -n "$(ulimit -Hn)"

secs() { # 90, 90s, 5m, 1h -> seconds
  case $1 in
    *h) echo $(( ${1%h} * 3600 )) ;;
    *m) echo $(( ${1%m} * 60 )) ;;
    *s) echo "${1%s}" ;;
    *)  echo "$1" ;;
  esac
}

deb_bin() { # binary package: the binary from PATH, else from the package unpacked into a cache
  if command -v "$1" >/dev/null; then command -v "$1"; return; fi
  local cache=${BENCH_CACHE:-$HOME/.cache/ferry-bench}
  if [ ! -x "$cache/usr/bin/$1" ]; then
    mkdir -p "$cache"
    (cd "$cache" && apt-get download "$2" >/dev/null 2>&1 && dpkg -x "$2"_*.deb .) || return 1
  fi
  echo "$cache/usr/bin/$1"
}

wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "not listening: $1" >&2; return 1; }
wait_http() { # url pid: until url answers 2xx, for 20 s at most or until pid exits
  for _ in $(seq 400); do curl -sf "$1" >/dev/null && return 0; kill -0 "$2" 2>/dev/null || return 1; sleep 0.05; done; return 1
}

delivered() { # sink: samples received so far, from ferry-load's last progress line
  tail -n 1 "$WORK/sink-$1.log" | sed -n 's/.* samples=\([0-9]*\) .*/\1/p'
}

up_api() { # addr: targets whose health is "up" in a Prometheus-compatible /api/v1/targets
  local body
  body=$(curl -sf "http://$1/api/v1/targets?state=active") || { echo n/a; return; }
  { grep -o '"health":"up"' <<<"$body" || true; } | wc -l
}
up_vmagent() {
  local body
  body=$(curl -sf "http://$VM_ADDR/metrics") || { echo n/a; return; }
  awk '/^vm_promscrape_targets\{/ && /status="up"/ {n += $NF} END {print n + 0}' <<<"$body"
}

interval=$(secs "$INTERVAL") window=$(secs "$DURATION") warmup=$(secs "$WARMUP")
timeout=$(( interval < 10 ? interval : 10 ))s
prom=$(deb_bin prometheus prometheus) || { echo "prometheus not available (apt-get install prometheus)" >&2; exit 1; }
vmagent=$(deb_bin vmagent victoria-metrics) || { echo "vmagent not available (apt-get install victoria-metrics)" >&2; exit 1; }
if [ "$FERRY" = 1 ] && [ ! -x "$FERRY_BIN" ]; then echo "$FERRY_BIN missing: run make build (or FERRY=0)" >&2; exit 1; fi
go build -o "$WORK/bin/" ./cmd/ferry-targets ./cmd/ferry-load

# name pid: the processes measured, in table order.
NAMES=() MPIDS=()
measure() { NAMES+=("$1"); MPIDS+=("$2"); }

# The simulator and the sinks run on one P: fewer thread wake-ups, less CPU
# taken from the scrapers measured.
GOMAXPROCS=1 "$WORK/bin/ferry-targets" --targets "$TARGETS" --series "$SERIES" --base-port "$BASE_PORT" \
  --file-sd "$WORK/targets.json" 2>"$WORK/targets.log" &
PIDS+=($!)
sim=$!
for _ in $(seq 400); do [ -s "$WORK/targets.json" ] && break; kill -0 "$sim" 2>/dev/null || break; sleep 0.05; done
[ -s "$WORK/targets.json" ] || { cat "$WORK/targets.log" >&2; exit 1; }

sinks=()
for port in $FERRY_SINK $PROM_SINK $VM_SINK; do
  GOMAXPROCS=1 "$WORK/bin/ferry-load" --receiver-only --receiver.listen "127.0.0.1:$port" >"$WORK/sink-$port.log" 2>&1 &
  PIDS+=($!)
  sinks+=($!)
  wait_port "$port"
done

scrape_yml() {
  cat <<YAML
global:
  scrape_interval: $INTERVAL
  scrape_timeout: $timeout
scrape_configs:
  - job_name: sim
    file_sd_configs: [{files: [$WORK/targets.json]}]
YAML
}

ferry=
if [ "$FERRY" = 1 ]; then
  { cat <<YAML
listen_address: $FERRY_ADDR
data_dir: $WORK/ferry
wal: {sync: $SYNC}
YAML
    scrape_yml
    cat <<YAML
remote_write:
  - name: sink
    url: http://127.0.0.1:$FERRY_SINK/api/v1/write
YAML
  } >"$WORK/ferry.yml"
  "$FERRY_BIN" run --config "$WORK/ferry.yml" --log.level warn 2>"$WORK/ferry.log" &
  ferry=$!
  PIDS+=($ferry)
fi

{ scrape_yml; cat <<YAML
remote_write:
  - url: http://127.0.0.1:$PROM_SINK/api/v1/write
YAML
} >"$WORK/prometheus.yml"
"$prom" --enable-feature=agent --config.file="$WORK/prometheus.yml" --storage.agent.path="$WORK/prometheus" \
  --web.listen-address="$PROM_ADDR" --log.level=warn 2>"$WORK/prometheus.log" &
prom_pid=$!
PIDS+=($prom_pid)
measure prometheus-agent $prom_pid

scrape_yml >"$WORK/vmagent.yml"
"$vmagent" -httpListenAddr="$VM_ADDR" -promscrape.config="$WORK/vmagent.yml" \
  -remoteWrite.url="http://127.0.0.1:$VM_SINK/api/v1/write" -remoteWrite.tmpDataPath="$WORK/vmagent" \
  -loggerLevel=ERROR >"$WORK/vmagent.log" 2>&1 &
vm_pid=$!
PIDS+=($vm_pid)
measure vmagent $vm_pid

wait_http "http://$PROM_ADDR/-/ready" "$prom_pid" || { echo "prometheus agent did not start:" >&2; tail -5 "$WORK/prometheus.log" >&2; exit 1; }
wait_http "http://$VM_ADDR/health" "$vm_pid" || { echo "vmagent did not start:" >&2; tail -5 "$WORK/vmagent.log" >&2; exit 1; }
if [ -n "$ferry" ]; then
  if wait_http "http://$FERRY_ADDR/-/ready" "$ferry"; then
    NAMES=(ferry "${NAMES[@]}") MPIDS=("$ferry" "${MPIDS[@]}")
  else
    echo "ferry did not start; measuring the others (its log follows):" >&2
    tail -5 "$WORK/ferry.log" >&2
    ferry=
  fi
fi
measure ferry-targets "$sim"
for p in "${sinks[@]}"; do measure sinks "$p"; done

echo "scrape benchmark: $TARGETS targets x $SERIES series every $INTERVAL; warmup ${warmup}s, window ${window}s" >&2
pause "$warmup"

declare -A del0
for port in $FERRY_SINK $PROM_SINK $VM_SINK; do del0[$port]=$(delivered "$port"); done
# One line per process and sample: round time name cpu_ticks rss_kB (or "- -" once it is gone).
rounds=$(( window / STEP ))
for r in $(seq 0 "$rounds"); do
  [ "$r" = 0 ] || pause "$STEP"
  now=$(date +%s.%N)
  for i in "${!NAMES[@]}"; do
    pid=${MPIDS[$i]} stat=
    if stat=$(cat "/proc/$pid/stat" 2>/dev/null) && rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null); then
      read -r -a f <<<"${stat##*) }"   # f[0] is field 3; utime and stime are fields 14 and 15
      echo "$r $now ${NAMES[$i]} $(( f[11] + f[12] )) $rss"
    else
      echo "$r $now ${NAMES[$i]} - -"
    fi
  done
done >"$WORK/samples"

declare -A up rate
span() { awk 'NR == 1 {a = $2} {b = $2} END {print b - a}' "$WORK/samples"; }
elapsed=$(span)
for port in $FERRY_SINK $PROM_SINK $VM_SINK; do
  rate[$port]=$(awk -v a="${del0[$port]:-0}" -v b="$(delivered "$port")" -v t="$elapsed" 'BEGIN {printf "%.0f", (b - a) / t}')
done
[ -z "$ferry" ] || up[ferry]=$(up_api "$FERRY_ADDR")
up[prometheus-agent]=$(up_api "$PROM_ADDR")
up[vmagent]=$(up_vmagent)
extra() { # name: up targets and delivered samples/s
  case $1 in
    ferry) echo "${up[ferry]:-n/a} ${rate[$FERRY_SINK]}" ;;
    prometheus-agent) echo "${up[prometheus-agent]} ${rate[$PROM_SINK]}" ;;
    vmagent) echo "${up[vmagent]} ${rate[$VM_SINK]}" ;;
    *) echo "- -" ;;
  esac
}

awk -v hz="$(getconf CLK_TCK)" -v extras="$(for n in ferry prometheus-agent vmagent; do printf '%s %s;' "$n" "$(extra $n)"; done)" '
  BEGIN { n = split(extras, e, ";"); for (i = 1; i <= n; i++) { split(e[i], x, " "); upt[x[1]] = x[2]; del[x[1]] = x[3] } }
  !($3 in seen) { seen[$3] = 1; order[++names] = $3 }
  { t[$1] = $2; last = $1 }
  $4 == "-" { gone[$3] = 1; next }
  { cpu[$3, $1] += $4; rss[$3, $1] += $5 }
  END {
    printf "%-17s %8s %6s %12s %12s %6s %13s\n", "process", "cpu_s", "cores", "rss_avg_MiB", "rss_max_MiB", "up", "delivered/s"
    for (k = 1; k <= names; k++) {
      p = order[k]; sum = 0; max = 0
      for (r = 0; r <= last; r++) { sum += rss[p, r]; if (rss[p, r] > max) max = rss[p, r] }
      c[p] = (cpu[p, last] - cpu[p, 0]) / hz; m[p] = sum / (last + 1) / 1024
      printf "%-17s %8.1f %6.3f %12.1f %12.1f %6s %13s%s\n", p, c[p], c[p] / (t[last] - t[0]), m[p], max / 1024,
        (p in upt) ? upt[p] : "-", (p in del) ? del[p] : "-", (p in gone) ? "  EXITED during the window" : ""
    }
    if ("ferry" in c) {
      printf "ferry/prometheus-agent cpu %.2f   ferry/vmagent cpu %.2f   ferry/vmagent rss %.2f\n",
        c["ferry"] / c["prometheus-agent"], c["ferry"] / c["vmagent"], m["ferry"] / m["vmagent"]
    }
  }' "$WORK/samples"
echo "expected per scraper: $TARGETS up, $(( TARGETS * (SERIES + 5) / interval )) samples/s ($SERIES series + 5 per scrape); sinks = 3 ferry-load receivers"
