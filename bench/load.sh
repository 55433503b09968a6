#!/usr/bin/env bash
# bench/load.sh: gunicorn (4 sync workers) on PostgreSQL under a bounded wrk load on 127.0.0.1.
#
# Two runs of --duration seconds each with --connections connections: the buyer's case page
# (GET /cases/<id>, the buyer's session cookie) and the seller's approve action (POST
# /seller/cases/<id>/act/approve with a CSRF token, each request on another requested case).
# Prints requests/s and latency percentiles (p50/p90/p99) of each, and checks in the database
# that every approve post approved a case. Everything it starts it stops: gunicorn is killed by
# its pid, its schema is dropped and its temporary folder removed, also on Ctrl-C or failure.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: bench/load.sh [--database URL] [--duration S] [--connections N] [--threads N]
                     [--workers N] [--cases N] [--port N]

  --database URL     PostgreSQL (default postgresql+psycopg://postgres@127.0.0.1:5432/test);
                     a schema bench_load_<random> is created there and dropped after
  --duration S       seconds of load per run (default 10)
  --connections N    wrk connections (default 8)
  --threads N        wrk threads (default 1; the machine's CPUs also serve gunicorn)
  --workers N        gunicorn sync workers (default 4)
  --cases N          requested cases ready to approve (default 20000)
  --port N           port on 127.0.0.1 (default: a free one)

Needs gunicorn in .venv (installed with pip if missing) and wrk (apt-get install -y wrk if
missing and run as root). Runs about 35 s with the defaults.
EOF
}

DATABASE="postgresql+psycopg://postgres@127.0.0.1:5432/test"
DURATION=10
CONNECTIONS=8
THREADS=1
WORKERS=4
CASES=20000
PORT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --database) DATABASE="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --cases) CASES="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench/load.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || { echo "bench/load.sh: no .venv (run make install first)" >&2; exit 2; }

if ! "$PY" -c "import gunicorn" 2>/dev/null; then
  echo "-- gunicorn is missing from .venv: installing it (pip install 'gunicorn>=22.0')"
  "$ROOT/.venv/bin/pip" install -q 'gunicorn>=22.0'
fi
if ! command -v wrk >/dev/null 2>&1; then
  echo "-- wrk is missing: installing it (apt-get install -y wrk)"
  if [ "$(id -u)" -ne 0 ]; then echo "bench/load.sh: install wrk first (apt-get install -y wrk)" >&2; exit 2; fi
  apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null; }
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/aftersales-load-XXXXXX")"
SCHEMA="bench_load_$("$PY" -c 'import secrets; print(secrets.token_hex(6))')"
GUNICORN_PID=""
WRK_PID=""
PREPARED=""

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$WRK_PID" ]; then kill -TERM "$WRK_PID" 2>/dev/null || true; wait "$WRK_PID" 2>/dev/null || true; fi
  if [ -n "$GUNICORN_PID" ] && kill -0 "$GUNICORN_PID" 2>/dev/null; then
    kill -TERM "$GUNICORN_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$GUNICORN_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$GUNICORN_PID" 2>/dev/null || true
    wait "$GUNICORN_PID" 2>/dev/null || true
  fi
  if [ -n "$PREPARED" ]; then
    "$PY" bench/load_prep.py drop --database "$DATABASE" --schema "$SCHEMA" || echo "could not drop schema $SCHEMA" >&2
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "$PORT" ]; then
  PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
fi
BASE="http://127.0.0.1:$PORT"

echo "== bench/load.sh: gunicorn $WORKERS workers on PostgreSQL, wrk on 127.0.0.1"
echo "   date: $(date -Iseconds)"
echo "   nproc: $(nproc); load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "   memory: $(free -h | awk '/^Mem:/ {print $2 " total, " $7 " available"}')"
echo "   python: $("$PY" -V 2>&1 | cut -d' ' -f2); gunicorn $("$ROOT/.venv/bin/gunicorn" --version 2>&1 | awk '{print $NF}' | tr -d ')'); $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"

PREPARED=1
"$PY" bench/load_prep.py prep --database "$DATABASE" --schema "$SCHEMA" --dir "$WORK" --cases "$CASES" | sed 's/^/   /'
echo "   server: $("$PY" - "$DATABASE" <<'PYEOF'
import sys
from sqlalchemy import create_engine, text
sys.path.insert(0, ".")
from bench.common import normalise_url
engine = create_engine(normalise_url(sys.argv[1]), pool_size=1)
with engine.connect() as connection:
    print(connection.execute(text("SELECT version()")).scalar_one().split(" on ")[0])
engine.dispose()
PYEOF
)"

AFTERSALES_INSTANCE_PATH="$WORK/instance" "$ROOT/.venv/bin/gunicorn" \
  --workers "$WORKERS" --bind "127.0.0.1:$PORT" --chdir "$ROOT" \
  --error-logfile "$WORK/gunicorn.log" --log-level warning wsgi:app &
GUNICORN_PID=$!

for _ in $(seq 1 300); do
  if "$PY" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" "$BASE/staff/login" 2>/dev/null; then
    break
  fi
  kill -0 "$GUNICORN_PID" 2>/dev/null || { echo "gunicorn did not start:" >&2; cat "$WORK/gunicorn.log" >&2; exit 1; }
  sleep 0.1
done

run_wrk() {  # name script seconds extra-args...
  local name="$1" script="$2" seconds="$3"; shift 3
  # In the background and waited for, so a signal reaches the trap at once, not after wrk ends.
  timeout $((seconds + 30)) wrk --threads "$THREADS" --connections "$CONNECTIONS" --duration "${seconds}s" \
    --timeout 10s --latency --script "$script" "$BASE" -- "$THREADS" > "$WORK/$name.txt" 2>&1 &
  WRK_PID=$!
  wait "$WRK_PID"
  WRK_PID=""
}

summary() {  # name
  local file="$WORK/$1.txt"
  local rps p50 p90 p99 total bad
  rps="$(awk '/^Requests\/sec:/ {print $2}' "$file")"
  p50="$(awk '$1 == "50%" {print $2}' "$file")"
  p90="$(awk '$1 == "90%" {print $2}' "$file")"
  p99="$(awk '$1 == "99%" {print $2}' "$file")"
  total="$(awk '/requests in/ {print $1}' "$file")"
  bad="$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$file")"
  printf "%-10s %10s %9s %9s %9s %9s %10s\n" "$1" "${rps:-?}" "${p50:-?}" "${p90:-?}" "${p99:-?}" "${total:-?}" "${bad:-0}"
}

echo "   warm-up: 2 s on the case page (not counted)"
run_wrk warmup "$WORK/case_page.lua" 2
echo "   load: ${DURATION} s per run, $CONNECTIONS connections, $THREADS wrk thread(s), gunicorn $WORKERS sync workers"
run_wrk case_page "$WORK/case_page.lua" "$DURATION"
run_wrk approve "$WORK/approve.lua" "$DURATION"

echo
printf "%-10s %10s %9s %9s %9s %9s %10s\n" "run" "requests/s" "p50" "p90" "p99" "requests" "non-2xx/3xx"
summary case_page
summary approve
CHECK="$("$PY" bench/load_prep.py report --database "$DATABASE" --schema "$SCHEMA")"
POSTS="$(awk '/requests in/ {print $1}' "$WORK/approve.txt")"
APPROVED="$("$PY" -c 'import json, sys; print(json.loads(sys.argv[1])["seller_approves"])' "$CHECK")"
echo "   approve posts answered: ${POSTS:-?}; cases approved in the database: $APPROVED (one per post while $CASES last; a post in flight at the end may add one)"
CASE_RPS="$(awk '/^Requests\/sec:/ {print $2}' "$WORK/case_page.txt")"
APPROVE_RPS="$(awk '/^Requests\/sec:/ {print $2}' "$WORK/approve.txt")"
echo
echo "case_page_requests_per_second: ${CASE_RPS:-?}"
echo "case_page_p99: $(awk '$1 == "99%" {print $2}' "$WORK/case_page.txt")"
echo "approve_requests_per_second: ${APPROVE_RPS:-?}"
echo "approve_p99: $(awk '$1 == "99%" {print $2}' "$WORK/approve.txt")"
echo "approve_vs_case_page_throughput_ratio: $("$PY" -c 'import sys; a, c = (float(x or "nan") for x in sys.argv[1:]); print(f"{a / c:.2f}")' "${APPROVE_RPS:-}" "${CASE_RPS:-}")"
if [ -s "$WORK/gunicorn.log" ] && grep -q -E "Traceback|ERROR" "$WORK/gunicorn.log"; then
  echo "gunicorn reported errors:"; grep -E -A3 "Traceback|ERROR" "$WORK/gunicorn.log" | head -40
  exit 1
fi
# wrk counts the responses it read; a post still in flight when it stopped may have approved one more.
if [ -n "$POSTS" ] && [ "$POSTS" -le "$CASES" ] && { [ "$APPROVED" -lt "$POSTS" ] || [ "$APPROVED" -gt $((POSTS + CONNECTIONS)) ]; }; then
  echo "ERROR: $POSTS approve posts but $APPROVED cases approved" >&2
  exit 1
fi
