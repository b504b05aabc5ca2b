#!/usr/bin/env bash
# End-to-end load benchmark: Ferry and (when available) vmagent 1.79 from
# Debian, each receiving the same remote-write load from ferry-load and
# forwarding to ferry-load's own receiver on this machine.
#
#   cmd/ferry-load/bench-e2e.sh            # needs bin/ferry, bin/ferry-load (make build)
#   DURATION=30s RATE=500000 cmd/ferry-load/bench-e2e.sh
#   PROTOS="1.0 2.0" VMAGENT=0 cmd/ferry-load/bench-e2e.sh   # Ferry ingesting Remote-Write 1.0 and 2.0
#
# Prints one JSON line per run (ferry-load --json) prefixed with its name.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-30s}
SERIES=${SERIES:-100000}
BATCH=${BATCH:-1000}
CONC=${CONC:-4}
RATES=${RATES:-"0 500000"}   # 0 = as fast as acknowledged
SYNCS=${SYNCS:-"always interval"}
PROTOS=${PROTOS:-"1.0"}      # Remote-Write versions pushed at Ferry (vmagent gets 1.0)
VMAGENT=${VMAGENT:-1}        # 0 skips vmagent
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

load() { # name pid rate [proto]
  ./bin/ferry-load --target "$TARGET" --series "$SERIES" --batch "$BATCH" --concurrency "$CONC" \
    --duration "$DURATION" --rate "$3" --pid "$2" --proto "${4:-1.0}" --progress 0 --json 2>/dev/null | sed "s/^/$1 rate=$3 /"
}

for rate in $RATES; do
  for sync in $SYNCS; do
   for proto in $PROTOS; do
    mkdir -p "$WORK/ferry"
    cat > "$WORK/ferry/ferry.yml" <<YAML
listen_address: 127.0.0.1:9201
data_dir: $WORK/ferry/data
wal: {sync: $sync}
remote_write:
  - name: sink
    url: http://127.0.0.1:19291/api/v1/write
YAML
    ./bin/ferry run --config "$WORK/ferry/ferry.yml" --log.level warn 2>"$WORK/ferry/log" &
    pid=$!
    wait_http http://127.0.0.1:9201/-/ready
    TARGET=http://127.0.0.1:9201/api/v1/write load "ferry(sync=$sync,proto=$proto)" "$pid" "$rate" "$proto"
    kill "$pid"; wait "$pid" || true
    rm -rf "$WORK/ferry"
   done
  done

  # vmagent, with its on-disk queue.
  if [ "$VMAGENT" = 1 ] && vm=$(vmagent_bin); then
    "$vm" -httpListenAddr=127.0.0.1:8429 -remoteWrite.url=http://127.0.0.1:19291/api/v1/write \
      -remoteWrite.tmpDataPath="$WORK/vmagent" -loggerLevel=ERROR >"$WORK/vmagent.log" 2>&1 &
    pid=$!
    wait_http http://127.0.0.1:8429/health
    TARGET=http://127.0.0.1:8429/api/v1/write load vmagent "$pid" "$rate"
    kill "$pid"; wait "$pid" || true
    rm -rf "$WORK/vmagent"
  else
    echo "vmagent not available (apt-get download victoria-metrics failed); skipped" >&2
  fi
done
