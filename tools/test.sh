#!/usr/bin/env bash
# Set up a virtual environment and run every test of kosmos_ros.
#
#   bash tools/test.sh
#
# Without ROS 2 this runs the core, CLI and lint tests; the rclpy node tests
# skip with their reason. Where ROS 2 is installed (/opt/ros/<distro>) it is
# sourced, the venv is made on ROS's own interpreter (the one its ros2 command
# runs on) and sees ROS's Python packages (--system-site-packages, with the
# numpy that distribution's extensions need: constraints/ros-<distro>.in),
# the packages are built with colcon (kosmos_bt where BehaviorTree.CPP is
# installed) and the node, action, behaviour-tree, launch and ament linter
# tests run too.
#
# Which versions: the lock (constraints/), the exact set this project tested
# for this Python, with or without ROS. KOSMOS_DEPS changes that:
#   locked  (default) constraints/py3.X.txt, or ros-<distro>-py3.X.txt where
#           ROS is sourced
#   lowest  constraints/lowest.txt: every runtime dependency at its lower bound
#   newest  no lock: the newest releases setup.py's ranges allow
#
# KOSMOS_LOCK names another lock file for `locked` (tools/matrix.sh uses it).
# KOSMOS_SETUP_ONLY=1 makes the venv (and, with ROS, builds the packages) and
# stops there: .ci/run makes them once, then runs two suites beside each
# other. A later run skips the editable install and the colcon build where
# nothing they depend on changed.
#
# Environment: KOSMOS_VENV (venv folder, default .venv), KOSMOS_NO_ROS=1 (do
# not source ROS even where /opt/ros has it: test as a user without ROS),
# PYTHON (interpreter without ROS), ROS_PYTHON (ROS's interpreter, default:
# the one its ros2 command names), TORCH_SPEC (what pip installs for torch,
# default: torch at the lock's version), TORCH_INDEX (an extra pip index for
# torch, e.g. PyTorch's CPU index), KOSMOS_ROS_DISTRO (which /opt/ros/<distro>
# to source when several are installed and none is sourced; default: the
# first).
set -eo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [ -n "${KOSMOS_NO_ROS:-}" ]; then
  if [ -n "${ROS_DISTRO:-}" ]; then
    echo "[test] KOSMOS_NO_ROS is set but ROS $ROS_DISTRO is sourced: use a shell without it"
    exit 1
  fi
  echo "[test] KOSMOS_NO_ROS: ROS is not sourced"
elif [ -z "${ROS_DISTRO:-}" ] && [ -n "${KOSMOS_ROS_DISTRO:-}" ]; then
  echo "[test] sourcing /opt/ros/$KOSMOS_ROS_DISTRO/setup.bash"
  # shellcheck disable=SC1090
  source "/opt/ros/$KOSMOS_ROS_DISTRO/setup.bash"
fi
if [ -z "${ROS_DISTRO:-}" ] && [ -z "${KOSMOS_NO_ROS:-}" ]; then
  for setup in /opt/ros/*/setup.bash; do
    if [ -f "$setup" ]; then
      echo "[test] sourcing $setup"
      # shellcheck disable=SC1090
      source "$setup"
      break
    fi
  done
fi

has_ament_package() {  # is $1 in the sourced ament index?
  local prefix
  for prefix in ${AMENT_PREFIX_PATH//:/ }; do
    [ -e "$prefix/share/ament_index/resource_index/packages/$1" ] && return 0
  done
  return 1
}

venv=${KOSMOS_VENV:-$root/.venv}
[[ "$venv" = /* ]] || venv="$root/$venv"  # pytest runs from kosmos_ros/
if [ -n "${ROS_DISTRO:-}" ]; then
  # ROS's Python extensions are built for one interpreter: the one its ros2
  # command runs on (/usr/bin/python3 for the distributions' packages).
  ros2=$(command -v ros2 || true)
  shebang=$([ -z "$ros2" ] || head -n 1 "$ros2")
  python=${ROS_PYTHON:-/usr/bin/python3}
  if [ -z "${ROS_PYTHON:-}" ] && [[ "$shebang" = '#!/'* ]] && \
      [ -x "${shebang#\#!}" ]; then
    python=${shebang#\#!}
  fi
  venv_args=(--system-site-packages)
  flavour=ros-$ROS_DISTRO-  # with constraints/ros-<distro>.in
else
  python=${PYTHON:-python3}
  venv_args=()
  flavour=
fi
# A venv made for another case (with or without ROS, another distribution,
# another interpreter) would mix two sets of versions: it is made again.
made_for="${ROS_DISTRO:-no ROS} on $python"
if [ -f "$venv/pyvenv.cfg" ] && \
    [ "$(cat "$venv/kosmos-made-for" 2>/dev/null)" != "$made_for" ]; then
  echo "[test] $venv was not made for $made_for; making it again"
  rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "[test] creating $venv with $python ${venv_args[*]}"
  "$python" -m venv "${venv_args[@]}" "$venv"
  echo "$made_for" > "$venv/kosmos-made-for"
fi
py="$venv/bin/python"
version=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
constraints=()
if [ -n "$flavour" ]; then
  ros_in="$root/constraints/ros-$ROS_DISTRO.in"
  if [ -f "$ros_in" ]; then
    constraints=(-c "$ros_in")
  else
    # A distribution this project has no install set for: at least keep
    # numpy at the major version ROS's extensions were built against.
    major=$("$python" -c 'import numpy; print(numpy.__version__.split(".")[0])')
    echo "[test] WARNING: no install set for ROS $ROS_DISTRO ($ros_in):" \
      "keeping numpy $major.x, as ROS's own Python has"
    printf 'numpy>=%s,<%s\n' "$major" "$((major + 1))" > "$venv/ros.in"
    constraints=(-c "$venv/ros.in")
  fi
fi
upgrade=()
case "${KOSMOS_DEPS:-locked}" in
  locked) lock=${KOSMOS_LOCK:-$root/constraints/${flavour}py$version.txt}
    if [ ! -f "$lock" ]; then
      echo "[test] WARNING: no lock for Python $version${flavour:+ with ROS}" \
        "($lock): resolving the newest versions setup.py allows, a set this" \
        "project has not tested (tools/lock.sh writes a lock)"
      lock=
    fi ;;
  lowest) lock="$root/constraints/lowest.txt" ;;
  newest) lock=; upgrade=(--upgrade --upgrade-strategy eager) ;;
  *) echo "[test] KOSMOS_DEPS must be locked, lowest or newest"; exit 1 ;;
esac
[ -z "$lock" ] || constraints+=(-c "$lock")
echo "[test] Python $version, dependencies: ${KOSMOS_DEPS:-locked}${lock:+ ($lock)}"
pip=("$py" -m pip install -q --disable-pip-version-check)
if ! "$py" -c 'import torch' 2>/dev/null || [ -n "${upgrade[*]}" ]; then
  # TORCH_INDEX, e.g. https://download.pytorch.org/whl/cpu: an index with the
  # CPU build, which skips gigabytes of CUDA libraries (the lock's version
  # with a +cpu label satisfies the lock).
  "${pip[@]}" "${constraints[@]}" "${upgrade[@]}" \
    ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} "${TORCH_SPEC:-torch}"
fi
extras=model,test,lint
if [ -n "$flavour" ] && "$python" -c 'import flake8, pydocstyle' 2>/dev/null; then
  # The distribution's flake8 and plugins (python3-flake8-*, what
  # ament_flake8 runs) are seen by the venv; a second copy of a plugin would
  # register its options twice and stop flake8.
  echo "[test] lint with the system's flake8 and pydocstyle (ament's)"
  extras=model,test
fi
# The editable install again only when what it installs from, or what the
# venv holds, changed since (a second run, or .ci/run's runs beside each
# other, find it done); one at a time: each writes kosmos_ros.egg-info.
inputs=(kosmos_ros/setup.py kosmos_ros/setup.cfg kosmos_ros/pyproject.toml)
for item in "${constraints[@]}"; do [ "$item" = -c ] || inputs+=("$item"); done
installed_for() {
  { echo "$extras"; cat "${inputs[@]}"; "$py" -m pip freeze -q \
      --disable-pip-version-check 2>/dev/null; } | sha256sum | cut -d' ' -f1
}
if [ -n "${upgrade[*]}" ] || [ "$(installed_for)" != \
    "$(cat "$venv/kosmos-installed-for" 2>/dev/null)" ]; then
  mkdir -p build
  flock build/pip-editable.lock \
    "${pip[@]}" "${constraints[@]}" "${upgrade[@]}" -e "kosmos_ros[$extras]"
  installed_for > "$venv/kosmos-installed-for"
fi
# (Not under ROS: the venv then also sees the system's packages.)
[ -n "$flavour" ] || "$py" -m pip check
"$py" -c 'import sys, numpy, cv2, torch, transformers
print("[test] Python %s: torch %s, transformers %s, numpy %s, OpenCV %s" % (
    sys.version.split()[0], torch.__version__, transformers.__version__,
    numpy.__version__, cv2.__version__))'

if [ -n "${ROS_DISTRO:-}" ]; then
  # The workspace steps of the README: both packages built with colcon on the
  # venv's interpreter (no --symlink-install: setuptools >= 80, which torch
  # pulls in, dropped `develop --editable`). Humble's FindPythonExtra reads
  # PYTHON_EXECUTABLE, so it is given too: pyenv shims on PATH would win.
  export PATH="$venv/bin:$PATH"
  ws="build/$ROS_DISTRO"  # one workspace per distro
  mkdir -p "$ws"
  "$py" -c 'import colcon_core' 2>/dev/null || {
    echo "[test] colcon is missing: pip install colcon-common-extensions"; exit 1; }
  packages=(kosmos_ros_interfaces kosmos_ros)
  # kosmos_bt (C++) needs BehaviorTree.CPP; without it, its tests skip.
  if has_ament_package behaviortree_cpp; then
    packages+=(kosmos_bt)
  else
    echo "[test] behaviortree_cpp is not installed: kosmos_bt is not built"
  fi
  # Built again only when a file of the packages changed since the last
  # build (which also keeps a run beside another from rewriting its install).
  index=()  # the ROS installs built against, as of their last change
  for prefix in ${AMENT_PREFIX_PATH//:/ }; do
    index+=("$(stat -c %Y "$prefix/share/ament_index/resource_index/packages" \
      2>/dev/null)")
  done
  built_for="$python ${packages[*]} ${index[*]} $(find "${packages[@]}" -type f \
    -not -path '*/.*' -not -path '*/__pycache__/*' -not -path '*.egg-info/*' \
    -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$ws/kosmos-built-for" 2>/dev/null)" = "$built_for" ]; then
    echo "[test] ${packages[*]}: unchanged since the last colcon build"
  else
    echo "[test] building ${packages[*]} with colcon"
    rm -f "$ws/kosmos-built-for"
    "$py" -m colcon --log-base "$ws/log" build \
      --base-paths "${packages[@]}" \
      --build-base "$ws/colcon" --install-base "$ws/install" \
      --cmake-args -DPython3_EXECUTABLE="$python" \
      -DPYTHON_EXECUTABLE="$python" -DBUILD_TESTING=OFF --no-warn-unused-cli \
      > "$ws/colcon.log" 2>&1 || { cat "$ws/colcon.log"; exit 1; }
    echo "$built_for" > "$ws/kosmos-built-for"
  fi
  # shellcheck disable=SC1091
  source "$ws/install/setup.bash"
  # The tests (and the nodes they launch) import the sources, not the copy.
  export PYTHONPATH="$root/kosmos_ros:$PYTHONPATH"
fi

if [ -n "${KOSMOS_SETUP_ONLY:-}" ]; then
  echo "[test] KOSMOS_SETUP_ONLY: $venv is ready; no lint, no tests"
  exit 0
fi

echo "[test] lint: flake8 + pep257 (the ament_flake8/ament_pep257 rules)"
# --match: pydocstyle skips test_*.py by default; ament_pep257 checks them.
(cd kosmos_ros && "$py" -m flake8 . ../examples && "$py" -m pydocstyle \
  --match='.*\.py' \
  --ignore=D100,D101,D102,D103,D104,D105,D106,D107,D203,D212,D404 \
  kosmos_ros test launch setup.py ../examples)

echo "[test] pytest"
cd kosmos_ros
exec "$py" -m pytest -ra test "$@"
