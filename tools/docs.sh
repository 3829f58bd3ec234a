#!/usr/bin/env bash
# Build kosmos_ros's documentation as docs.ros.org does (rosdoc2: the guides
# in kosmos_ros/doc/ and the API of every module) and fail on any warning.
#
#   bash tools/docs.sh      # HTML in build/docs/output/kosmos_ros/index.html
#
# rosdoc2 and Sphinx come from PyPI into their own venv (build/docs-venv), at
# the versions of constraints/docs.txt; nothing of the model stack or ROS is
# needed (kosmos_ros/doc/conf.py mocks those imports).
set -eo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=build/docs-venv
rm -rf build/docs
mkdir -p build/docs
[ -x "$venv/bin/rosdoc2" ] || {
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    -c constraints/docs.txt rosdoc2 > build/docs/pip.log 2>&1 || {
    cat build/docs/pip.log; exit 1; }
}
log=build/docs/rosdoc2.log
# rosdoc2 runs sphinx-apidoc from PATH and exits 0 on warnings: the log says.
if ! (cd build/docs && PATH="$root/$venv/bin:$PATH" rosdoc2 build \
    --package-path "$root/kosmos_ros" --output-directory output \
    --doc-build-directory work) > "$log" 2>&1; then
  cat "$log"; echo "[docs] rosdoc2 failed"; exit 1
fi
if grep -E 'WARNING|ERROR|Traceback' "$log"; then
  echo "[docs] the build has warnings (whole log: $log)"; exit 1
fi
echo "[docs] built with no warning: build/docs/output/kosmos_ros/index.html"
