#!/bin/sh
# Prints the version of the checked-out tree: the packages' version and the
# one `ferry version` prints, whether the binary came from packaging/build.sh
# or `make build` (`make -s print-version` shows it). Valid for both dpkg
# and rpm (digits, letters, '.', '+', '~'), from `git describe`:
#   v1.2.3                   1.2.3
#   v1.2.3-rc.1              1.2.3~rc.1      (sorts before 1.2.3)
#   v1.2.3-4-gabc1234        1.2.3+git4.gabc1234
#   no tag: abc1234          0.0.0~git20261122053000.abc1234
# with "+dirty" (or ".dirty" after a '+') for uncommitted changes. The
# commit time in the untagged form keeps successive builds in order.
#
# FERRY_GIT_DESCRIBE and FERRY_GIT_TIME (YYYYMMDDHHMMSS) replace the git
# queries, for tests; an empty FERRY_GIT_TIME means a tag was found.
set -eu

if [ "${FERRY_GIT_DESCRIBE+set}" ]; then
	desc=$FERRY_GIT_DESCRIBE
	when=${FERRY_GIT_TIME-}
else
	desc=$(git describe --tags --always --dirty 2>/dev/null) || {
		echo 0.0.0~unknown
		exit 0
	}
	when=
	if ! git describe --tags --abbrev=0 >/dev/null 2>&1; then
		when=$(TZ=UTC git log -1 --date=format-local:%Y%m%d%H%M%S --format=%cd)
	fi
fi

dirty=
case "$desc" in
*-dirty)
	dirty=1
	desc=${desc%-dirty}
	;;
esac

if [ -n "$when" ]; then
	# No tag: describe gave the abbreviated commit hash.
	ver="0.0.0~git$when.$desc"
else
	ver=${desc#v}
	# 1.2.3-4-gabc1234: 4 commits after the tag 1.2.3.
	if expr "$ver" : '.*-[0-9][0-9]*-g[0-9a-f][0-9a-f]*$' >/dev/null; then
		hash=${ver##*-}
		rest=${ver%-*}
		n=${rest##*-}
		ver="${rest%-*}+git$n.$hash"
	fi
	# A pre-release tag (1.2.3-rc.1) sorts before the release.
	base=${ver%%+*}
	suffix=${ver#"$base"}
	ver="$(printf '%s' "$base" | sed 's/-/~/')$suffix"
fi

if [ -n "$dirty" ]; then
	case "$ver" in
	*+*) ver="$ver.dirty" ;;
	*) ver="$ver+dirty" ;;
	esac
fi
# Anything else dpkg or rpm would refuse becomes '.'.
printf '%s\n' "$ver" | sed 's/[^A-Za-z0-9.+~]/./g'
