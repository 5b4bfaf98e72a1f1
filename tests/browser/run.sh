#!/usr/bin/env bash
# tests/browser/run.sh - the book's journeys through the site in a real
# browser (ctest label "browser").
#
#   tests/browser/run.sh COMPHOST PLUGIN_DIR WORK_DIR
#
# It makes a fresh message store and view database on the dev database
# server (as the end-to-end tests do: MESSAGE_STORE_CONNECTION_STRING,
# DATABASE_URL and COMPHOST_DEV_DB_ADMIN_URL, from `scripts/dev-db env`),
# runs config/video-tutorials.ini on them with the site on a free port,
# installs puppeteer-core into WORK_DIR (npm ci, from the pinned
# package-lock.json; no browser download: Debian's chromium is used) and runs
# journeys.js, which keeps a screenshot of each page in WORK_DIR/screenshots.
# The host and the databases go at the end, whatever happened; the host's log
# is WORK_DIR/site.log.
set -euo pipefail

if [ $# -ne 3 ]; then
  echo "usage: tests/browser/run.sh COMPHOST PLUGIN_DIR WORK_DIR" >&2
  exit 2
fi
comphost=$1
plugin_dir=$2
work=$3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
chromium=${CHROMIUM:-/usr/bin/chromium}

for v in MESSAGE_STORE_CONNECTION_STRING DATABASE_URL COMPHOST_DEV_DB_ADMIN_URL; do
  if [ -z "${!v:-}" ]; then
    echo "browser: $v is not set: run the tests with scripts/test, or after" \
         'eval "$(scripts/dev-db env)"' >&2
    exit 1
  fi
done
for tool in "$chromium" node npm psql; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "browser: $tool is missing: scripts/setup installs it" >&2
    exit 1
  fi
done

mkdir -p "$work"
rm -rf "$work/screenshots" "$work/email"
mkdir -p "$work/screenshots" "$work/email"

# puppeteer-core, as package-lock.json pins it
if ! cmp -s "$here/package-lock.json" "$work/package-lock.json" ||
   [ ! -d "$work/node_modules/puppeteer-core" ]; then
  cp "$here/package.json" "$here/package-lock.json" "$work/"
  echo "browser: npm ci in $work"
  (cd "$work" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi

# fresh databases
suffix=$(od -An -tx1 -N6 /dev/urandom | tr -d ' \n')
store_db=browser_store_$suffix
view_db=browser_view_$suffix
store_url=${MESSAGE_STORE_CONNECTION_STRING%/*}/$store_db
view_url=${DATABASE_URL%/*}/$view_db
host_pid=

cleanup() {
  if [ -n "$host_pid" ] && kill -0 "$host_pid" 2>/dev/null; then
    kill -TERM "$host_pid"
    for _ in $(seq 1 100); do
      kill -0 "$host_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$host_pid" 2>/dev/null || true
  fi
  psql -q "$COMPHOST_DEV_DB_ADMIN_URL" -c "DROP DATABASE IF EXISTS $store_db WITH (FORCE)" \
       -c "DROP DATABASE IF EXISTS $view_db WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

psql -q -v ON_ERROR_STOP=1 "$COMPHOST_DEV_DB_ADMIN_URL" \
     -c "CREATE DATABASE $store_db TEMPLATE message_store_template" \
     -c "CREATE DATABASE $view_db" >/dev/null

# the shipped configuration, with the site on a free port
port=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => {
  console.log(s.address().port); s.close(); });')
sed "s/127\.0\.0\.1:3000/127.0.0.1:$port/g" "$root/config/video-tutorials.ini" > "$work/site.ini"

MESSAGE_STORE_CONNECTION_STRING=$store_url DATABASE_URL=$view_url \
EMAIL_DIRECTORY=$work/email \
COMPHOST_SESSION_SECRET=${COMPHOST_SESSION_SECRET:-browser-test-secret-0123456789abcdef} \
  "$comphost" -c "$work/site.ini" --plugin-dir "$plugin_dir" > "$work/site.log" 2>&1 &
host_pid=$!

for _ in $(seq 1 300); do
  if node -e 'require("http").get(process.argv[1], r => process.exit(r.statusCode === 200 ? 0 : 1))
                .on("error", () => process.exit(1));' "http://127.0.0.1:$port/"; then
    break
  fi
  if ! kill -0 "$host_pid" 2>/dev/null; then
    echo "browser: the host ended: see $work/site.log" >&2
    tail -20 "$work/site.log" >&2
    exit 1
  fi
  sleep 0.1
done

rc=0
NODE_PATH=$work/node_modules BASE_URL=http://127.0.0.1:$port CHROMIUM=$chromium \
EMAIL_DIR=$work/email SCREENSHOT_DIR=$work/screenshots \
  node "$here/journeys.js" || rc=$?
# a sanitizer build's host reports there (scripts/test --sanitize)
if grep -q 'Sanitizer\|runtime error:' "$work/site.log"; then
  echo "browser: a sanitizer reported a problem: see $work/site.log" >&2
  rc=1
fi
if [ "$rc" -ne 0 ]; then
  echo "browser: the journeys failed; screenshots in $work/screenshots, the host's log in" \
       "$work/site.log" >&2
fi
exit "$rc"
