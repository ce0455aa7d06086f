#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# scripts/setup.sh: installs what tally needs on Debian (bookworm) and bootstraps autotools.
# Idempotent: apt runs only when a package is missing. Run as root on a fresh machine.
set -eu
cd "$(dirname "$0")/.."

PACKAGES="build-essential autoconf automake libtool pkg-config g++ clang \
 liburcu-dev libck-dev libjemalloc-dev libsqlite3-dev sqlite3 \
 libpq-dev postgresql-15 libcurl4-openssl-dev libjansson-dev \
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

# Node.js and npm for dynalite: Debian's nodejs and npm unless a node with npm is already
# installed (a NodeSource nodejs bundles npm and conflicts with Debian's npm package).
if ! command -v npm >/dev/null 2>&1; then
	echo "setup: installing nodejs npm"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

# dynalite (the DynamoDB server the tests start), pinned by package-lock.json.
if [ -f package-lock.json ] && [ ! -d node_modules/dynalite ]; then
	echo "setup: npm ci"
	npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi

if [ ! -x configure ] || [ configure.ac -nt configure ] || [ -n "$(find mk Makefile.am -newer configure 2>/dev/null)" ]; then
	echo "setup: autoreconf"
	autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
fi
