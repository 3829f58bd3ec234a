#!/usr/bin/env bash
# Write, or check, the locks in constraints/: for Python 3.10, 3.11 and 3.12,
# without ROS (py3.X.txt) and with it (ros-py3.X.txt: constraints/ros.in on
# top), every package pip resolves for kosmos_ros[model,test,lint] and torch.
#
#   bash tools/lock.sh                   # resolve anew, write the six locks
#   bash tools/lock.sh --check [LOCK...]  # each (or each named) lock resolves,
#                                         # unchanged, on its own Python
#
# Each set is resolved in a bare venv of its own Python (pip install --dry-run
# --report: metadata only, nothing is installed), from PyPI alone:
# PIP_CONFIG_FILE=/dev/null and no PIP_* index variables hide a machine's own
# wheel folders and caps. So
# --check proves that every pinned version exists for that Python - the
# Dockerfile installs ros-py3.10.txt on Humble and ros-py3.12.txt on Jazzy -
# and that setup.py has not drifted from the lock. The sets are for Linux
# x86_64 (torch's CUDA libraries included; a CPU build of torch at the same
# version satisfies them too).
#
# Pythons: $PYTHON3_10 (and so on), else python3.10 on PATH, else pyenv's.
# TORCH: the torch the locks hold (default torch==2.13.0, the release this
# project tests on; its CPU wheel is on the project's machine).
set -eo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mode=write
if [ "${1:-}" = --check ]; then
  mode=check
  shift
fi
only=" $* "
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# shellcheck source=tools/find_python.sh
source "$root/tools/find_python.sh"

# resolve PYTHON REPORT [pip args...]: what pip would install, as a report.
resolve() {
  local python=$1 report=$2 venv
  shift 2
  venv="$work/venv-$("$python" -c 'import sys; print(sys.version_info[1])')"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  env -u PIP_FIND_LINKS -u PIP_CONSTRAINT -u PIP_INDEX_URL \
    -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null \
    "$venv/bin/python" -m pip install -q \
    --disable-pip-version-check --dry-run --ignore-installed \
    --report "$report" "$@" "./kosmos_ros[model,test,lint]" "${TORCH:-torch==2.13.0}"
}

# pins REPORT: the report's packages as sorted name==version lines (the
# project itself and local version labels such as +cpu left out).
pins() {
  python3 - "$1" <<'EOF'
import json, re, sys
report = json.load(open(sys.argv[1]))
lines = set()
for item in report['install']:
    name = re.sub(r'[-_.]+', '-', item['metadata']['name']).lower()
    if name != 'kosmos-ros':
        lines.add('%s==%s' % (name, item['metadata']['version'].split('+')[0]))
print('\n'.join(sorted(lines)))
EOF
}

failed=0
done_any=
for version in 3.10 3.11 3.12; do
  for flavour in '' ros-; do
    lock="constraints/${flavour}py$version.txt"
    if [ "$only" != "  " ] && [[ "$only" != *" ${lock#constraints/} "* ]]; then
      continue
    fi
    done_any=1
    python=$(find_python "$version") || {
      echo "[lock] no Python $version found (set PYTHON${version/./_})"; exit 1; }
    extra=()
    [ -z "$flavour" ] || extra=(-c constraints/ros.in)
    if [ "$mode" = check ]; then
      resolve "$python" "$work/report.json" "${extra[@]}" -c "$lock"
      if diff <(grep -v '^#' "$lock") <(pins "$work/report.json") \
          > "$work/diff"; then
        echo "[lock] $lock resolves on Python $version: $(grep -vc '^#' "$lock") pins"
      else
        echo "[lock] $lock is stale for Python $version (run tools/lock.sh):"
        cat "$work/diff"; failed=1
      fi
    else
      resolve "$python" "$work/report.json" "${extra[@]}"
      {
        echo "# kosmos_ros lock: Python $version${flavour:+ with ROS 2 (constraints/ros.in)}, Linux x86_64."
        echo "# Written by tools/lock.sh from PyPI on $(date -u +%Y-%m-%d); checked by tools/lock.sh --check."
        pins "$work/report.json"
      } > "$lock"
      echo "[lock] wrote $lock ($(grep -vc '^#' "$lock") pins)"
    fi
  done
done
if [ -z "$done_any" ]; then
  echo "[lock] no lock is named$only(py3.X.txt or ros-py3.X.txt, X = 10..12)"
  exit 2
fi
if [ "$mode" = write ]; then
  python3 tools/versions_table.py --write README.md
fi
exit "$failed"
