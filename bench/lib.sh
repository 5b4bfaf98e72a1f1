# shellcheck shell=bash
# bench/lib.sh - what the benchmark scripts share. Sourced, not run: the
# script sets ROOT (the repository) first.
#
#   bench_dev_db             use the dev database of the environment, or start it
#   bench_build              an optimised comphost in build-bench/ (sets COMPHOST)
#   bench_init NAME          scratch directory, database names, clean-up on exit
#   bench_create_db VAR [TEMPLATE]
#                            a fresh database, dropped on exit; its name in VAR
#   db_url DB / store_url DB / admin_url DB
#                            connection strings of a database of the dev cluster
#   poll_until URL SQL TARGET SECONDS
#                            run SQL (one number) until it is >= TARGET
#   cpu_ns PID               the CPU time a process has used, in nanoseconds
#   cpu_each PID... / cpu_since LIST
#                            CPU time used since, by processes still there
#   backends_of DB...        the client backends connected to those databases
#   workers_of PID           the worker processes of a host
#   bench_start_host VAR INI LOG [ENV=VALUE...] / bench_stop_host PID
#
# Every loop here is bounded in count and time; every connection goes to the
# dev cluster (127.0.0.1 with scripts/dev-db).

export LC_NUMERIC=C     # a dot in $EPOCHREALTIME and in printf's numbers

say() { echo "bench: $*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }
now() { echo "$EPOCHREALTIME"; }

# The dev database: the one the environment names (eval "$(scripts/dev-db
# env)", run where the cluster was started), else this checkout's, started
# now if need be.
bench_dev_db() {
  local tool
  for tool in psql cmake; do
    command -v "$tool" >/dev/null || die "$tool is missing: run scripts/setup"
  done
  if [ -z "${COMPHOST_DEV_DB_ADMIN_URL:-}" ] || [ -z "${MESSAGE_STORE_CONNECTION_STRING:-}" ] ||
     [ -z "${DATABASE_URL:-}" ]; then
    bash "$ROOT/scripts/dev-db" start >/dev/null
    eval "$(bash "$ROOT/scripts/dev-db" env)"
  fi
  [ "$(psql -qAtX "$COMPHOST_DEV_DB_ADMIN_URL" -c "SELECT count(*) FROM pg_database
        WHERE datname = 'message_store_template'" 2>/dev/null)" = 1 ] ||
    die "no dev database with message_store_template at $COMPHOST_DEV_DB_ADMIN_URL: run scripts/dev-db start"
}

bench_build() {
  say "building an optimised comphost in build-bench"
  cmake -S "$ROOT" -B "$ROOT/build-bench" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
  cmake --build "$ROOT/build-bench" -j"$(nproc)" >/dev/null
  COMPHOST=$ROOT/build-bench/host/comphost
}

# The dev URLs end in /<database>.
db_url() { echo "${DATABASE_URL%/*}/$1"; }
store_url() { echo "${MESSAGE_STORE_CONNECTION_STRING%/*}/$1"; }
admin_url() { echo "${COMPHOST_DEV_DB_ADMIN_URL%/*}/$1"; }
admin() { psql -qAtX -v ON_ERROR_STOP=1 "$COMPHOST_DEV_DB_ADMIN_URL" "$@"; }

BENCH_DBS=()
BENCH_PIDS=()     # processes still running (hosts, the peer), killed on exit
bench_cleanup() {
  local pid db
  for pid in "${BENCH_PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
  # a server that is restarting (the tests restart the dev cluster) gets a
  # few seconds to come back
  for db in "${BENCH_DBS[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      psql -qAtX "$COMPHOST_DEV_DB_ADMIN_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
        >/dev/null 2>&1 && break
      sleep 1
    done
  done
  [ -n "${WORK:-}" ] && rm -rf "$WORK"
}

# A scratch directory in WORK, a suffix for database names in SUFFIX, and
# the clean-up: hosts killed, databases dropped, WORK removed.
bench_init() {
  WORK=$(mktemp -d)
  SUFFIX="${1}_$$_$RANDOM"
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

# bench_create_db VAR [TEMPLATE]: a database named bench_<VAR-ish>_<suffix>,
# from TEMPLATE if given; its name in VAR. No subshell: BENCH_DBS must keep
# the name for the clean-up.
bench_create_db() {
  local _bcd_var=$1 _bcd_template=${2:-} _bcd_name
  _bcd_name="bench_${_bcd_var,,}_$SUFFIX"
  BENCH_DBS+=("$_bcd_name")
  admin -c "CREATE DATABASE $_bcd_name${_bcd_template:+ TEMPLATE $_bcd_template}" >/dev/null
  printf -v "$_bcd_var" '%s' "$_bcd_name"
}

bench_drop_db() {
  admin -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null
}

# poll_until URL SQL TARGET SECONDS [PAUSE]: run SQL, which answers one whole
# number, until the answer is >= TARGET, pausing PAUSE seconds (0.01) between
# runs. One psql connection, each statement a transaction of its own
# (autocommit): no snapshot is held between polls, so PostgreSQL can prune
# the row versions the contenders leave behind. Returns 1 when SECONDS pass
# first or the connection fails; POLL_VALUE holds the last answer.
poll_until() {
  local url=$1 sql=$2 target=$3 seconds=$4 pause=${5:-0.01}
  local deadline in out pid rc=1
  deadline=$(awk -v t="$(now)" -v s="$seconds" 'BEGIN { printf "%d", t + s }')
  POLL_VALUE=
  coproc POLL { exec psql -qAtX -v ON_ERROR_STOP=1 "$url" 2>/dev/null; }
  in=${POLL[1]} out=${POLL[0]} pid=$POLL_PID
  while [ "${EPOCHREALTIME%.*}" -lt "$deadline" ]; do
    { printf '%s;\n' "$sql" >&"$in"; } 2>/dev/null || break
    IFS= read -r -t 30 POLL_VALUE <&"$out" || break
    [[ $POLL_VALUE =~ ^-?[0-9]+$ ]] || break
    if [ "$POLL_VALUE" -ge "$target" ]; then rc=0; break; fi
    sleep "$pause"
  done
  exec {in}>&-
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  return "$rc"
}

# The CPU time (user and system) PID has used so far, in nanoseconds, from
# /proc/PID/task/*/schedstat; 0 when it is gone.
cpu_ns() {
  local f ns total=0
  for f in /proc/"$1"/task/*/schedstat; do
    [ -r "$f" ] || continue
    read -r ns _ <"$f" 2>/dev/null || continue
    total=$((total + ns))
  done
  echo "$total"
}

# The CPU time of each PID, a "pid:ns" line each, for cpu_since.
cpu_each() {
  local pid
  for pid in "$@"; do echo "$pid:$(cpu_ns "$pid")"; done
}

# What the processes of a cpu_each list used since, in nanoseconds, those
# gone meanwhile left out (their count then reads 0).
cpu_since() {
  local pid ns now total=0
  while IFS=: read -r pid ns; do
    [ -n "$pid" ] || continue
    now=$(cpu_ns "$pid")
    [ "$now" -ge "$ns" ] && total=$((total + now - ns))
  done <<<"$1"
  echo "$total"
}

# The pids of the client backends connected to the databases named.
backends_of() {
  local list
  list=$(printf "'%s'," "$@")
  admin -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'
            AND datname IN (${list%,}) AND pid <> pg_backend_pid()"
}

workers_of() { ps -o pid= --ppid "$1" | tr -d ' '; }

# bench_start_host VAR INI LOG [ENV=VALUE...]: start comphost -c INI in the
# background, its output in LOG; its pid in VAR. The variables that would
# override the INI file's databases and plugins (those of scripts/dev-db env)
# are removed: a host reaches only what its INI file names.
bench_start_host() {
  local _bsh_var=$1 _bsh_ini=$2 _bsh_log=$3
  shift 3
  env -u MESSAGE_STORE_CONNECTION_STRING -u DATABASE_URL -u COMPHOST_PLUGIN_DIR "$@" \
    "$COMPHOST" -c "$_bsh_ini" >>"$_bsh_log" 2>&1 &
  BENCH_PIDS+=("$!")
  printf -v "$_bsh_var" '%s' "$!"
}

# PID has ended (and was waited for): no longer one to kill on exit.
bench_forget() {
  local _bf_pid _bf_keep=()
  for _bf_pid in "${BENCH_PIDS[@]}"; do
    [ "$_bf_pid" = "$1" ] || _bf_keep+=("$_bf_pid")
  done
  BENCH_PIDS=("${_bf_keep[@]}")
}

# Stop a host as an operator would (SIGTERM), SIGKILL after 10 s.
bench_stop_host() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  bench_forget "$pid"
}

# Wait (at most SECONDS) until LOG shows COUNT lines matching PATTERN.
wait_for_log() {
  local log=$1 pattern=$2 count=$3 seconds=$4 i
  for ((i = 0; i < seconds * 10; i++)); do
    [ "$(grep -c -- "$pattern" "$log" 2>/dev/null || true)" -ge "$count" ] && return 0
    sleep 0.1
  done
  return 1
}
