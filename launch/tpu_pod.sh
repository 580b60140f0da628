#!/usr/bin/env bash
# Runs one command on every worker of a Cloud TPU VM (a pod slice or a single
# host), from your own machine, through `gcloud compute tpus tpu-vm ssh
# --worker=all`. Each worker runs one JAX process; jaxfp.distributed finds
# the others through JAX's TPU cluster detection (JAXFP_DISTRIBUTED=on).
#
#   launch/tpu_pod.sh --tpu NAME --zone ZONE [--project P] [--create \
#       --accelerator TYPE --version RUNTIME [--spot]] [--setup] \
#       [--remote_dir DIR] [--background] [--dry_run] -- COMMAND...
#
#   launch/tpu_pod.sh --tpu my-pod --zone us-central2-b --setup -- \
#       python -m jaxfp.main --config=configs/fen.py --workdir=/mnt/shared/fen
#
# Creates nothing unless asked: --create makes the TPU VM first
# (gcloud compute tpus tpu-vm create; --accelerator e.g. v4-32, --version
# e.g. tpu-ubuntu2204-base). --setup copies the tracked files of this
# working tree to ~/DIR on every worker (DIR: --remote_dir, default jaxfp)
# and installs requirements.txt plus the TPU build of the pinned jax into
# ~/DIR/.venv. COMMAND then runs in ~/DIR with that venv active, on all
# workers at once; --background detaches it (nohup, output in
# ~/DIR/run.log on each worker) so a dropped ssh connection does not end it.
# The workdir must be shared by the workers (an NFS or gcsfuse mount) so
# that every process sees the checkpoints. Values may also come from the
# environment: TPU_NAME, ZONE, PROJECT, ACCELERATOR_TYPE, RUNTIME_VERSION.
# --dry_run (or DRY_RUN=1) prints the commands instead of running them.
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

tpu="${TPU_NAME:-}"
zone="${ZONE:-}"
project="${PROJECT:-}"
accelerator="${ACCELERATOR_TYPE:-}"
version="${RUNTIME_VERSION:-}"
remote_dir=jaxfp
create=0
setup=0
spot=0
background=0
dry_run="${DRY_RUN:-0}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;  # --opt=value: --opt value.
    --tpu) tpu="$2"; shift 2 ;;
    --zone) zone="$2"; shift 2 ;;
    --project) project="$2"; shift 2 ;;
    --accelerator) accelerator="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --remote_dir) remote_dir="$2"; shift 2 ;;
    --create) create=1; shift ;;
    --setup) setup=1; shift ;;
    --spot) spot=1; shift ;;
    --background) background=1; shift ;;
    --dry_run) dry_run=1; shift ;;
    -h|--help) usage 0 ;;
    --) shift; break ;;
    *) echo "tpu_pod.sh: unknown argument $1 (put -- before the command)" >&2
       usage ;;
  esac
done
if [[ -z "$tpu" || -z "$zone" ]]; then
  echo "tpu_pod.sh: --tpu and --zone (or TPU_NAME, ZONE) are required" >&2
  usage
fi
if [[ $# -eq 0 && $create -eq 0 && $setup -eq 0 ]]; then
  echo "tpu_pod.sh: nothing to do: give --create, --setup or a command" >&2
  usage
fi
if [[ $create -eq 1 && ( -z "$accelerator" || -z "$version" ) ]]; then
  echo "tpu_pod.sh: --create needs --accelerator and --version" >&2
  usage
fi

repo="$(cd "$(dirname "$0")/.." && pwd)"
# The TPU build of exactly the jax version the requirements pin.
jax_version="$(sed -n 's/^jax==\([^ ;#]*\).*/\1/p' "$repo/requirements.txt")"
if [[ -z "$jax_version" ]]; then
  echo "tpu_pod.sh: no jax==VERSION line in $repo/requirements.txt" >&2
  exit 1
fi

gcloud_flags=(--zone="$zone")
if [[ -n "$project" ]]; then
  gcloud_flags+=(--project="$project")
fi

# Shell-quotes $1 readably: as is when safe, else in single quotes.
quote() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# Runs "$@", or prints it (shell-quoted) under --dry_run.
run() {
  if [[ "$dry_run" == 1 ]]; then
    local line=''
    for arg in "$@"; do
      line+="${line:+ }$(quote "$arg")"
    done
    echo "$line"
  else
    "$@"
  fi
}

on_all_workers() {
  run gcloud compute tpus tpu-vm ssh "$tpu" "${gcloud_flags[@]}" \
    --worker=all --command="$1"
}

if [[ $create -eq 1 ]]; then
  create_flags=(--accelerator-type="$accelerator" --version="$version")
  if [[ $spot -eq 1 ]]; then
    create_flags+=(--spot)
  fi
  run gcloud compute tpus tpu-vm create "$tpu" "${gcloud_flags[@]}" \
    "${create_flags[@]}"
fi

if [[ $setup -eq 1 ]]; then
  archive="${TMPDIR:-/tmp}/jaxfp-$$.tar.gz"
  if [[ "$dry_run" == 1 ]]; then
    echo "(cd $(quote "$repo") && git ls-files -z |" \
      "tar --null -czf $(quote "$archive") -T -)"
  else
    trap 'rm -f "$archive"' EXIT
    (cd "$repo" && git ls-files -z | tar --null -czf "$archive" -T -)
  fi
  run gcloud compute tpus tpu-vm scp "$archive" "$tpu:jaxfp.tar.gz" \
    "${gcloud_flags[@]}" --worker=all
  dir_q="$(printf '%q' "$remote_dir")"
  on_all_workers "set -e; mkdir -p ~/$dir_q; tar -xzf ~/jaxfp.tar.gz -C ~/$dir_q; cd ~/$dir_q; python3 -m venv .venv; . .venv/bin/activate; pip install -q -r requirements.txt; pip install -q 'jax[tpu]==$jax_version'"
fi

if [[ $# -gt 0 ]]; then
  command_q="$(printf ' %q' "$@")"
  dir_q="$(printf '%q' "$remote_dir")"
  remote="cd ~/$dir_q && . .venv/bin/activate && export JAXFP_DISTRIBUTED=on &&"
  if [[ $background -eq 1 ]]; then
    remote+=" nohup$command_q > run.log 2>&1 < /dev/null &"
  else
    remote+="$command_q"
  fi
  on_all_workers "$remote"
fi
