#!/usr/bin/env bash
# Write, or check, the locks in constraints/: for each Python without ROS
# (py3.X.txt) and for each ROS 2 distribution on each Python it runs on
# (ros-DISTRO-py3.X.txt: constraints/ros-DISTRO.in on top), every package pip
# resolves for kosmos_ros[model,test,lint] and torch. The list of locks is
# tools/versions_table.py's (--locks).
#
#   bash tools/lock.sh [LOCK...]          # resolve anew, write every (or
#                                         # each named) lock
#   bash tools/lock.sh --check [LOCK...]  # each (or each named) lock resolves,
#                                         # unchanged, for its own Python
#
# Each set is resolved in a bare venv of its own Python (pip install --dry-run
# --report: metadata only, nothing is installed), from PyPI alone:
# PIP_CONFIG_FILE=/dev/null and no PIP_* index variables hide a machine's own
# wheel folders and caps. So --check proves that every pinned version exists
# for that Python - the Dockerfile installs ros-humble-py3.10.txt,
# ros-jazzy-py3.12.txt and ros-lyrical-py3.14.txt - and that setup.py has not
# drifted from the lock. The sets are for Linux x86_64 (torch's CUDA libraries
# included; a CPU build of torch at the same version satisfies them too).
#
# A Python with no interpreter here (3.14 on this project's machine) is
# resolved by the newest Python that is here, with pip's --python-version and
# --only-binary=:all: (so every pin has a wheel for that Python; the few
# dependencies PyPI has only as sources, pure-Python lint plugins, are first
# built into wheels). pip then still reads environment markers as the
# interpreter it runs on (a known pip limitation): the lock's header names it.
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

pip_env=(env -u PIP_FIND_LINKS -u PIP_CONSTRAINT -u PIP_INDEX_URL
         -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null)

# venv_of PYTHON: a bare venv of that interpreter (made once per run).
venv_of() {
  local venv
  venv="$work/venv-$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  [ -x "$venv/bin/python" ] || "$1" -m venv "$venv"
  echo "$venv"
}

# The project as a wheel: what a cross-Python resolve (binaries only) takes.
# Built from a copy: setuptools leaves build/ beside the sources it builds.
project_wheel() {
  if ! compgen -G "$work/project/*.whl" > /dev/null; then
    mkdir -p "$work/source"
    tar -c --exclude=build --exclude='*.egg-info' --exclude=__pycache__ \
      kosmos_ros | tar -x -C "$work/source"
    "${pip_env[@]}" "$(venv_of "$(command -v python3)")/bin/python" -m pip \
      wheel -q --disable-pip-version-check --no-deps -w "$work/project" \
      "$work/source/kosmos_ros"
  fi
  echo "$(ls "$work"/project/*.whl)[model,test,lint]"
}

# resolve PYTHON REPORT TARGET [pip args...]: what pip would install for
# Python TARGET (PYTHON's own version, or another one: see the header).
resolve() {
  local python=$1 report=$2 target=$3 venv own
  shift 3
  venv=$(venv_of "$python")
  own=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  local cross=()
  if [ "$own" != "$target" ]; then
    # Wheels of the sdist-only dependencies, built on this Python.
    "${pip_env[@]}" "$venv/bin/python" -m pip install -q \
      --disable-pip-version-check --dry-run --ignore-installed \
      --report "$work/own.json" "$@" "./kosmos_ros[model,test,lint]" \
      "${TORCH:-torch==2.13.0}"
    python3 - "$work/own.json" > "$work/sdists.txt" <<'PY'
import json, sys
for item in json.load(open(sys.argv[1]))['install']:
    url = item['download_info']['url']
    if not url.endswith('.whl') and not url.startswith('file:'):
        print('%s==%s' % (item['metadata']['name'], item['metadata']['version']))
PY
    mkdir -p "$work/sdist-wheels"
    if [ -s "$work/sdists.txt" ]; then
      "${pip_env[@]}" "$venv/bin/python" -m pip wheel -q \
        --disable-pip-version-check --no-deps -w "$work/sdist-wheels" \
        -r "$work/sdists.txt"
    fi
    cross=(--python-version "$target" --only-binary=:all:
           --find-links "$work/sdist-wheels")
    set -- "${cross[@]}" "$@" "$(project_wheel)"
  else
    set -- "$@" "./kosmos_ros[model,test,lint]"
  fi
  "${pip_env[@]}" "$venv/bin/python" -m pip install -q \
    --disable-pip-version-check --dry-run --ignore-installed \
    --report "$report" "$@" "${TORCH:-torch==2.13.0}"
}

# pins REPORT: the report's packages as sorted name==version lines (the
# project itself and local version labels such as +cpu left out).
pins() {
  python3 - "$1" <<'PY'
import json, re, sys
report = json.load(open(sys.argv[1]))
lines = set()
for item in report['install']:
    name = re.sub(r'[-_.]+', '-', item['metadata']['name']).lower()
    if name != 'kosmos-ros':
        lines.add('%s==%s' % (name, item['metadata']['version'].split('+')[0]))
print('\n'.join(sorted(lines)))
PY
}

# The newest Python here, for a version with no interpreter of its own.
newest_python() {
  local version
  for version in 3.13 3.12 3.11; do
    find_python "$version" && return 0
  done
  return 1
}

failed=0
done_any=
for name in $(python3 tools/versions_table.py --locks); do
  lock="constraints/$name"
  if [ "$only" != "  " ] && [[ "$only" != *" $name "* ]]; then
    continue
  fi
  done_any=1
  version=${name##*py}
  version=${version%.txt}
  extra=() distro=
  if [[ "$name" = ros-* ]]; then
    distro=${name#ros-}
    distro=${distro%%-*}
    extra=(-c "constraints/ros-$distro.in")
  fi
  if python=$(find_python "$version"); then
    how="Python $version"
  else
    python=$(newest_python) || { echo "[lock] no Python found"; exit 1; }
    how="pip --python-version $version --only-binary=:all: on Python $("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])'), which reads markers as itself"
  fi
  if [ "$mode" = check ]; then
    resolve "$python" "$work/report.json" "$version" "${extra[@]}" -c "$lock"
    if diff <(grep -v '^#' "$lock") <(pins "$work/report.json") \
        > "$work/diff"; then
      echo "[lock] $lock resolves for Python $version ($how): $(grep -vc '^#' "$lock") pins"
    else
      echo "[lock] $lock is stale for Python $version (run tools/lock.sh $name):"
      cat "$work/diff"; failed=1
    fi
  else
    resolve "$python" "$work/report.json" "$version" "${extra[@]}"
    {
      echo "# kosmos_ros lock: Python $version${distro:+ with ROS 2 ${distro^} (constraints/ros-$distro.in)}, Linux x86_64."
      echo "# Written by tools/lock.sh from PyPI on $(date -u +%Y-%m-%d) ($how); checked by tools/lock.sh --check."
      pins "$work/report.json"
    } > "$lock"
    echo "[lock] wrote $lock ($(grep -vc '^#' "$lock") pins)"
  fi
done
if [ -z "$done_any" ]; then
  echo "[lock] no lock is named$only(see: python3 tools/versions_table.py --locks)"
  exit 2
fi
if [ "$mode" = write ]; then
  python3 tools/versions_table.py --write kosmos_ros/doc/dependencies.md
fi
exit "$failed"
