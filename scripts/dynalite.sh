#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# scripts/dynalite.sh: runs dynalite (a DynamoDB-compatible server, pinned in package-lock.json
# and installed by scripts/setup.sh with `npm ci`) on a free loopback port for the tests and
# benchmarks.
#
#   dynalite.sh start DIR [persist]  start; DIR/port holds the port, DIR/pid the process id;
#                                    with "persist" the data lives in DIR/db (LevelDB) and
#                                    survives a restart
#   dynalite.sh restart DIR          SIGKILL the server, start it again on the same port
#   dynalite.sh stop DIR             stop it and remove DIR (the data with it)
#   dynalite.sh check                exit 0 if node and dynalite are there (77, why, if not)
#
# Exit status 77 (Automake's "skip") when node or dynalite is missing.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
# TALLY_NODE_MODULES: a node_modules folder elsewhere (scripts/check.sh points make distcheck,
# whose unpacked tree has none, at the checkout's).
mod="${TALLY_NODE_MODULES:-$here/node_modules}/dynalite"
cmd=${1:-}
dir=${2:-}
available() {
	command -v node >/dev/null 2>&1 || { echo "node not found (apt-get install nodejs)" >&2; exit 77; }
	[ -f "$mod/package.json" ] || { echo "dynalite not installed: run scripts/setup.sh (npm ci)" >&2; exit 77; }
}
[ "$cmd" = check ] && { available; exit 0; }
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|restart|stop DIR [persist]" >&2; exit 2; }

launch() { # $1 = port (0: any free one)
	port_file="$dir/port.new"
	rm -f "$port_file"
	db=""
	[ -f "$dir/persist" ] && db="$dir/db"
	# createTableMs 50: a table is ACTIVE quickly, but the client's wait is still exercised.
	DYNALITE_DB="$db" DYNALITE_PORT="$1" DYNALITE_PORT_FILE="$port_file" \
	nohup node -e '
		const fs = require("fs");
		const opts = { createTableMs: 50, deleteTableMs: 50, updateTableMs: 50 };
		if (process.env.DYNALITE_DB) opts.path = process.env.DYNALITE_DB;
		const server = require(process.argv[1])(opts);
		server.listen(Number(process.env.DYNALITE_PORT), "127.0.0.1", () => {
			fs.writeFileSync(process.env.DYNALITE_PORT_FILE, String(server.address().port));
		});' "$mod" >"$dir/log" 2>&1 &
	echo $! >"$dir/pid"
	i=0
	while [ ! -s "$port_file" ]; do
		i=$((i + 1))
		if [ $i -gt 200 ] || ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
			echo "dynalite did not start:" >&2
			cat "$dir/log" >&2
			return 1
		fi
		sleep 0.05
	done
	mv "$port_file" "$dir/port"
}

case "$cmd" in
start)
	available
	mkdir -p "$dir"
	[ "${3:-}" = persist ] && : >"$dir/persist"
	launch 0
	;;
restart)
	port=$(cat "$dir/port")
	kill -9 "$(cat "$dir/pid")" 2>/dev/null || true
	while kill -0 "$(cat "$dir/pid")" 2>/dev/null; do sleep 0.02; done
	launch "$port"
	;;
stop)
	if [ -f "$dir/pid" ]; then
		pid=$(cat "$dir/pid")
		kill "$pid" 2>/dev/null || true
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.02; done
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -rf "$dir"
	;;
*)
	echo "usage: $0 start|restart|stop DIR [persist]" >&2
	exit 2
	;;
esac
