#!/usr/bin/env bash
# valgrind_host.sh COMPHOST PLUGIN_DIR - run the host under valgrind: `check`,
# then the daemon (supervisor and worker) through start-up, 300 messages and
# a SIGTERM. Fails on any memory error or any leak of the host's own
# allocations. Needs the dev database (scripts/test sets up the environment).
set -euo pipefail
comphost=$1
plugin_dir=$2
: "${MESSAGE_STORE_CONNECTION_STRING:?run through scripts/test}"
: "${DATABASE_URL:?run through scripts/test}"
: "${COMPHOST_DEV_DB_ADMIN_URL:?run through scripts/test}"

work=$(mktemp -d)
# a fresh store and view database of its own, from the dev cluster's template
suffix="$$_$RANDOM"
store="vg_store_$suffix"
views="vg_view_$suffix"
pid=
cleanup() {
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
  psql -qAt "$COMPHOST_DEV_DB_ADMIN_URL" -c "DROP DATABASE IF EXISTS $store WITH (FORCE)" \
       -c "DROP DATABASE IF EXISTS $views WITH (FORCE)" >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
psql -qAt "$COMPHOST_DEV_DB_ADMIN_URL" -c "CREATE DATABASE $store TEMPLATE message_store_template" \
     -c "CREATE DATABASE $views" >/dev/null
# the dev URLs end in /<database>
export MESSAGE_STORE_CONNECTION_STRING="${MESSAGE_STORE_CONNECTION_STRING%/*}/$store"
export DATABASE_URL="${DATABASE_URL%/*}/$views"

cat >"$work/vg.ini" <<INI
[host]
plugin_dir = $plugin_dir
log_level = debug
[fx]
library = fx_runtime
position_store = view_data
INI

vg=(valgrind --quiet --error-exitcode=9 --leak-check=full
    --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect)

echo "valgrind: comphost check"
"${vg[@]}" "$comphost" check -c "$work/vg.ini" >/dev/null

echo "valgrind: comphost -c (supervisor and worker)"
"${vg[@]}" --trace-children=yes "$comphost" -c "$work/vg.ini" 2>"$work/host.log" &
pid=$!
for _ in $(seq 1 100); do
  grep -q "host running" "$work/host.log" && break
  sleep 0.2
done
grep -q "host running" "$work/host.log" || { cat "$work/host.log"; exit 1; }
psql -qAt "$MESSAGE_STORE_CONNECTION_STRING" -c "SELECT count(message_store.write_message(
  gen_random_uuid()::varchar, 'fxrun-' || (i % 7), 'Count', '{}'::jsonb))
  FROM generate_series(1, 300) AS i" >/dev/null
sleep 3
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=
if [ "$status" -ne 0 ] || grep -q "==[0-9]*==" "$work/host.log"; then
  grep "==[0-9]*==" "$work/host.log" | head -60
  echo "valgrind: FAILED (exit $status)"
  exit 1
fi
grep -q "Stopped fx:run" "$work/host.log" || { echo "valgrind: the worker did not stop cleanly"; exit 1; }
echo "valgrind: no errors, no leaks"
