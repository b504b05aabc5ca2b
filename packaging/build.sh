#!/bin/sh
# Builds the ferry .deb and .rpm packages into $DIST (default dist/), for
# each architecture in $ARCHES (default "amd64 arm64"), with nfpm pinned in
# tools.mod. `make packages` runs it.
#
# Reproducible: the binary is built with -trimpath and -buildvcs=false,
# the man page is gzipped without name or time, and every time stamp in the
# packages is SOURCE_DATE_EPOCH (default: the last commit's time), so the
# same tree builds the same bytes.
#
# FERRY_PKG_VERSION overrides the version from packaging/version.sh.
set -eu
cd "$(dirname "$0")/.."

GO=${GO:-go}
DIST=${DIST:-dist}
ARCHES=${ARCHES:-amd64 arm64}
FORMATS=${FORMATS:-deb rpm}
FERRY_PKG_VERSION=${FERRY_PKG_VERSION:-$(sh packaging/version.sh)}
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)
fi
export FERRY_PKG_VERSION SOURCE_DATE_EPOCH

build=$DIST/build
rm -rf "$build"
mkdir -p "$build"
# Only this build's packages stay in $DIST.
rm -f "$DIST"/ferry_*.deb "$DIST"/ferry-*.rpm

gzip -9 -n -c packaging/ferry.1 >"$build/ferry.1.gz"

for arch in $ARCHES; do
	mkdir -p "$build/$arch"
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch $GO build -trimpath -buildvcs=false \
		-ldflags "-s -w -X main.version=$FERRY_PKG_VERSION" \
		-o "$build/$arch/ferry" ./cmd/ferry
	for format in $FORMATS; do
		FERRY_ARCH=$arch FERRY_BIN=$build/$arch/ferry FERRY_MAN=$build/ferry.1.gz \
			$GO tool -modfile=tools.mod nfpm package --config packaging/nfpm.yaml \
			--packager "$format" --target "$DIST/"
	done
done
rm -rf "$build"
ls -l "$DIST"/ferry_*.deb "$DIST"/ferry-*.rpm
