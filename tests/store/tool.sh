#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# tests/store/tool.sh: tools/tally-store against a real SQLite store written by real worker
# processes (tests/store/worker): totals, writers, leases (with a crash range), sessions,
# connections, reap, exit statuses, and that a URL's password is never printed. TAP.
set -u
tool=tools/tally-store
worker=tests/store/worker
dir=$(mktemp -d "${TMPDIR:-/tmp}/tally-store-tool.XXXXXX")
pid=
cleanup() {
	[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM
url="sqlite://$dir/t.db"
n=0
failed=0
check() { # check STATUS NAME
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=1; fi
}
# wait_for FILE PATTERN: up to 20 s
wait_for() {
	i=0
	while ! grep -q "$2" "$1" 2>/dev/null && [ $i -lt 2000 ]; do sleep 0.01; i=$((i + 1)); done
}

$worker "$url" w1 flush 60000 3 5 >"$dir/w1.out"
check $? "a worker flushes 5 times, 3 keys"
$tool "$url" totals >"$dir/totals"
check $? "totals exits 0"
printf 'k0 5\nk1 5\nk2 5\n' | cmp -s - "$dir/totals"
check $? "totals: each key 5, in key order"
$tool "$url" writers | grep -q '^w1 epoch=1 last_seq=5 expires_in_ms=[-0-9]* state=reaped$'
check $? "writers: w1 closed cleanly shows its last seq and no lease"

$worker "$url" l1 lease inv 10 3 >/dev/null
$tool "$url" leases | grep -q '^inv mark=25 issued=25 clean=yes$'
check $? "leases: a clean close gave back the unused half"
$worker "$url" l2 lease crashy 10 1000000 >"$dir/l2.out" &
pid=$!
wait_for "$dir/l2.out" '^n 50$'
kill -9 $pid
wait $pid 2>/dev/null
pid=
$tool "$url" leases | grep -q '^crashy mark=[0-9]* issued=[0-9]* clean=no crash_range=([0-9]*,[0-9]*]$'
check $? "leases: a SIGKILLed owner leaves its crash range"

$worker "$url" speaker records "s 1" 4 60000 >/dev/null
check $? "a worker writes a session with a speaker and 4 listeners"
$tool "$url" sessions | grep -q '^s\\x201 speakerConnectionId=s\\x201-speaker .*listenerCount=4 .*writer=speaker/1$'
check $? "sessions: the record, its writer and epoch (a space escaped as \\x20)"
[ "$($tool "$url" sessions nobody | wc -l)" -eq 0 ]
check $? "sessions WRITER_ID: only that writer's"
[ "$($tool "$url" connections "s 1" | wc -l)" -eq 5 ]
check $? "connections SESSION: 5"
$tool "$url" connections "s 1" | sed -n 2p | grep -q 'targetLanguage=de role=listener'
check $? "connections in (session, language) order"

[ "$($tool "$url" gauge live)" = "live 0 live_writers=0" ]
check $? "gauge: w1 closed cleanly, so its contribution is gone"
$tool "$url" gauge >/dev/null 2>&1
[ $? -eq 1 ]
check $? "gauge without a key: usage, exit 1"

$worker "$url" dying flush 100 2 0 >"$dir/dying.out" &
pid=$!
wait_for "$dir/dying.out" '^acked 3$'
# (a few tries: on a loaded host the writer may miss its 100 ms lease now and then)
live=1
for try in 1 2 3 4 5; do
	[ "$($tool "$url" gauge live)" = "live 1 live_writers=1" ] && { live=0; break; }
	sleep 0.05
done
check $live "gauge: a running writer's contribution counts"
kill -9 $pid
wait $pid 2>/dev/null
pid=
sleep 0.3
$tool "$url" writers | grep -q '^dying epoch=1 .* state=expired$'
check $? "writers: a killed writer shows expired after its 100 ms lease"
[ "$($tool "$url" gauge live)" = "live 0 live_writers=0" ]
check $? "gauge: an expired writer no longer counts, even before the reap"
[ "$($tool "$url" reap)" = "reaped 1" ]
check $? "reap: reaped 1"
$tool "$url" writers | grep -q '^dying epoch=1 .* state=reaped$'
check $? "writers: now reaped"

$tool >/dev/null 2>&1
[ $? -eq 1 ]
check $? "no arguments: usage, exit 1"
$tool "$url" bogus >/dev/null 2>&1
[ $? -eq 1 ]
check $? "unknown command: exit 1"
$tool "sqlite://$dir/none.db" totals >/dev/null 2>"$dir/err"
[ $? -eq 2 ] && grep -q 'cannot open' "$dir/err"
check $? "a missing store: exit 2 with a text"
$tool "sqlite://admin:s3cret-pw@localhost$dir/t.db" totals >"$dir/out" 2>&1
[ $? -eq 2 ] && ! grep -q 's3cret' "$dir/out"
check $? "a URL with a password: refused, the password never printed"

echo "1..$n"
exit $failed
