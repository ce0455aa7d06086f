#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# scripts/build.sh NAME [configure args...]: configures and builds tally out of tree in
# build/NAME (release, tsan, asan). Reconfigures only when the arguments changed.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
name=$1; shift
dir="$top/build/$name"
mkdir -p "$dir"
cd "$dir"
if [ ! -f Makefile ] || [ "$(cat .configure-args 2>/dev/null)" != "$*" ]; then
	"$top/configure" -q "$@" >configure.out 2>&1 || { cat configure.out; exit 1; }
	echo "$*" >.configure-args
fi
make -j"$(nproc)" -s >make.out 2>&1 || { tail -50 make.out; exit 1; }
