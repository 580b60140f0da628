#!/usr/bin/env bash
# Starts N JAX processes on this machine, each with M simulated CPU devices,
# joined through jaxfp.distributed (JAXFP_COORDINATOR, JAXFP_NUM_PROCESSES,
# JAXFP_PROCESS_ID) with gloo CPU collectives: a multi-host run in miniature,
# for testing.
#
#   launch/local.sh [--devices_per_process M] [--port P] [--log_dir DIR] \
#       [--dry_run] N -- COMMAND...
#   launch/local.sh 2 -- python -m jaxfp.main --config=configs/fen.py:test \
#       --workdir=/tmp/jaxfp_local
#
# M defaults to 2; the port to a free one. Process 0 writes to this
# terminal; the others too, unless --log_dir gives each a file
# (DIR/process_<i>.log). SIGTERM or SIGINT to this script is passed to every
# process (they save a checkpoint and exit; launch again to resume). If one
# process fails, the others are stopped. The exit status is the first
# failure's, else 0. --dry_run (or DRY_RUN=1) prints the commands instead.
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

devices=2
port=''
log_dir=''
dry_run="${DRY_RUN:-0}"
grace_s="${GRACE_S:-60}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --devices_per_process) devices="$2"; shift 2 ;;
    --devices_per_process=*) devices="${1#*=}"; shift ;;
    --port) port="$2"; shift 2 ;;
    --port=*) port="${1#*=}"; shift ;;
    --log_dir) log_dir="$2"; shift 2 ;;
    --log_dir=*) log_dir="${1#*=}"; shift ;;
    --dry_run) dry_run=1; shift ;;
    -h|--help) usage 0 ;;
    --) shift; break ;;
    -*) echo "local.sh: unknown option $1" >&2; usage ;;
    *)
      if [[ -n "${num_processes:-}" ]]; then
        echo "local.sh: put -- before the command" >&2; usage
      fi
      num_processes="$1"; shift ;;
  esac
done
if [[ -z "${num_processes:-}" || $# -eq 0 ]]; then
  usage
fi
if ! [[ "$num_processes" =~ ^[1-9][0-9]*$ && "$devices" =~ ^[1-9][0-9]*$ ]]
then
  echo "local.sh: N ($num_processes) and M ($devices) must be positive" \
    "integers" >&2
  exit 2
fi

if [[ -z "$port" ]]; then
  if [[ "$dry_run" == 1 ]]; then
    port=PORT
  else
    # Asks the kernel for a free port; taken again by process 0 a moment
    # later (a race with other programs, tolerable on a test machine).
    port="$(python3 -c 'import socket; s = socket.socket();
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  fi
fi

# Shell-quotes $1 readably: as is when safe, else in single quotes.
quote() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# XLA_FLAGS is replaced, not appended to: an inherited device count (a
# test session's) would otherwise win or clash.
env_for() {
  printf '%s\n' "JAX_PLATFORMS=cpu" \
    "XLA_FLAGS=--xla_force_host_platform_device_count=$devices" \
    "JAXFP_COORDINATOR=localhost:$port" \
    "JAXFP_NUM_PROCESSES=$num_processes" "JAXFP_PROCESS_ID=$1"
}

if [[ "$dry_run" == 1 ]]; then
  for ((i = 0; i < num_processes; i++)); do
    line="env"
    while IFS= read -r assignment; do
      line+=" $(quote "$assignment")"
    done < <(env_for "$i")
    for arg in "$@"; do
      line+=" $(quote "$arg")"
    done
    if [[ -n "$log_dir" && $i -gt 0 ]]; then
      line+=" > $(quote "$log_dir/process_$i.log") 2>&1"
    fi
    echo "$line &"
  done
  exit 0
fi

if [[ -n "$log_dir" ]]; then
  mkdir -p "$log_dir"
fi
pids=()
for ((i = 0; i < num_processes; i++)); do
  mapfile -t assignments < <(env_for "$i")
  if [[ -n "$log_dir" && $i -gt 0 ]]; then
    env "${assignments[@]}" "$@" > "$log_dir/process_$i.log" 2>&1 &
  else
    env "${assignments[@]}" "$@" &
  fi
  pids+=("$!")
done

# shellcheck disable=SC2317  # Called by the traps below.
forward() {
  echo "local.sh: passing $1 to processes ${pids[*]}" >&2
  kill -s "$1" "${pids[@]}" 2> /dev/null || true
}
trap 'forward TERM' TERM
trap 'forward INT' INT

# Waits for every process; the first failure stops the rest (they would
# otherwise wait for it in their next collective until JAX's heartbeat
# timeout).
status=0
remaining=("${pids[@]}")
while [[ ${#remaining[@]} -gt 0 ]]; do
  # Returns when a process exits, or early when a trapped signal arrives.
  wait -n || true
  still=()
  for pid in "${remaining[@]}"; do
    if kill -0 "$pid" 2> /dev/null; then
      still+=("$pid")
      continue
    fi
    rc=0
    wait "$pid" || rc=$?
    if [[ $rc -ne 0 && $status -eq 0 ]]; then
      status=$rc
      failed=1
    fi
  done
  remaining=("${still[@]+"${still[@]}"}")
  if [[ -n "${failed:-}" && ${#remaining[@]} -gt 0 ]]; then
    unset failed
    echo "local.sh: a process exited with status $status; stopping" \
      "${remaining[*]}" >&2
    kill -s TERM "${remaining[@]}" 2> /dev/null || true
    ( sleep "$grace_s"; kill -s KILL "${remaining[@]}" ) > /dev/null 2>&1 &
    killer=$!
  fi
done
# The processes are gone; their ids must not be killed after reuse.
if [[ -n "${killer:-}" ]]; then
  kill "$killer" 2> /dev/null || true
fi
exit "$status"
