#!/bin/sh
# scripts/setup.sh: installs what tally needs on Debian (bookworm) and bootstraps autotools.
# Idempotent: apt runs only when a package is missing. Run as root on a fresh machine.
set -eu
cd "$(dirname "$0")/.."

PACKAGES="build-essential autoconf automake libtool pkg-config \
 liburcu-dev libck-dev libjemalloc-dev libsqlite3-dev \
 libbenchmark-tools python3 python3-scipy gnuplot-nox"

missing=""
for package in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $package"
done
if [ -n "$missing" ]; then
	echo "setup: installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if [ ! -x configure ] || [ configure.ac -nt configure ] || [ -n "$(find mk Makefile.am -newer configure 2>/dev/null)" ]; then
	echo "setup: autoreconf"
	autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
fi
