#!/usr/bin/env bash
# Builds Prometheus 3 (the Remote-Write 2.0 peer of the integration suite)
# from the Go module proxy, once: the binary is cached under
# ${FERRY_PEERS_DIR:-$HOME/.cache/ferry-peers} and reused when present.
# Prints the binary's path. Takes 10-15 minutes on 2 cores the first time.
#
# Prometheus 3.Y.Z is the module version v0.3YY.Z. `go install` of its
# cmd/prometheus fails (its go.mod has a replace directive), so a throwaway
# module requires it and repeats that replace.
set -euo pipefail

version="${PROMETHEUS3_VERSION:-v0.315.0}"
dir="${FERRY_PEERS_DIR:-$HOME/.cache/ferry-peers}"
bin="$dir/prometheus-$version"

if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi

mkdir -p "$dir"
work="$(mktemp -d "$dir/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"
cat >go.mod <<MOD
module ferrypeers/prometheus3

go 1.26

require github.com/prometheus/prometheus $version

replace cloud.google.com/go => cloud.google.com/go v0.123.0
MOD
cat >tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/prometheus/prometheus/cmd/prometheus"
GO
export GOFLAGS="-mod=mod"
go mod tidy >&2
CGO_ENABLED=0 go build -trimpath -tags tools -o prometheus.tmp github.com/prometheus/prometheus/cmd/prometheus >&2
mv prometheus.tmp "$bin"
echo "$bin"
