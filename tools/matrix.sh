#!/usr/bin/env bash
# The dependency matrix, ROS hidden, each leg in a fresh venv of its own:
#
#   bash tools/matrix.sh [LEG ...]     # default: all legs; about 45 minutes
#
# Disk: about 35 GB (each leg's venv; PyPI's torch for Python 3.10, 3.12 and
# 3.13 is the CUDA build, ~5 GB). `rm -rf build/matrix` afterwards.
#
#   3.10 ... 3.13    the whole suite on that Python with its lock (3.14:
#                    no interpreter here; tools/lock.sh --check resolves it)
#   5.20             Python 3.11's lock with transformers 5.20.2, the newest
#                    release for Python 3.10 (the old cache keyword)
#   lowest           Python 3.10, every runtime dependency at its lower bound
#   newest           Python 3.12, the newest releases setup.py allows, from
#                    PyPI alone (a machine's own wheel folders and caps hidden)
#
# Then every leg captions, locates phrases and asks through the CLI, on the
# same images with the same tiny checkpoint, with eager and with the default
# attention, and the JSON is compared with the first leg's
# (tools/compare_outputs.py): text, phrases and boxes equal, box scores within
# 1e-3 relative - and bit for bit, eager, between 3.11 and 5.20, which differ
# in transformers alone. Prints one line per leg; exits non-zero if any leg
# failed or differed. Legs' venvs and logs: build/matrix/<leg>/.
# Pythons as for tools/lock.sh.
set -eo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ -n "${ROS_DISTRO:-}" ]; then
  echo "[matrix] ROS $ROS_DISTRO is sourced: run the matrix from a shell without it"
  exit 1
fi
legs=("$@")
[ ${#legs[@]} -gt 0 ] || legs=(3.11 5.20 3.10 3.12 3.13 lowest newest)
out=build/matrix
mkdir -p "$out"

# shellcheck source=tools/find_python.sh
source "$root/tools/find_python.sh"

phrases=('a red cup' 'the dog on the left')
prompt='<grounding><phrase> a red cup</phrase><object>'
failed=0
summary=()
reference=
for leg in "${legs[@]}"; do
  case "$leg" in
    3.10|3.11|3.12|3.13|3.14) version=$leg; deps=locked ;;
    5.20) version=3.11; deps=locked ;;
    lowest) version=3.10; deps=lowest ;;
    newest) version=3.12; deps=newest ;;
    *) echo "[matrix] unknown leg $leg (3.10 ... 3.14 5.20 lowest newest)"; exit 2 ;;
  esac
  dir="$out/$leg"
  rm -rf "$dir"
  mkdir -p "$dir"
  python=$(find_python "$version") || {
    summary+=("$leg: no Python $version found"); failed=1; continue; }
  env=(KOSMOS_NO_ROS=1 KOSMOS_VENV="$root/$dir/venv" PYTHON="$python"
       KOSMOS_DEPS="$deps")
  if [ "$leg" = 5.20 ]; then
    sed 's/^transformers==.*/transformers==5.20.2/' constraints/py3.11.txt \
      > "$dir/lock.txt"
    env+=(KOSMOS_LOCK="$root/$dir/lock.txt")
  fi
  [ "$deps" != newest ] || env=(-u PIP_FIND_LINKS -u PIP_CONSTRAINT
                                PIP_CONFIG_FILE=/dev/null "${env[@]}")
  echo "[matrix] $leg: Python $version, $deps dependencies (log: $dir/test.log)"
  start=$(date +%s)
  if env "${env[@]}" bash tools/test.sh -q -p no:cacheprovider \
      > "$dir/test.log" 2>&1; then
    result=passed
  else
    result=FAILED; failed=1
  fi
  counts=$(grep -E '^[=]* ?[0-9]+ (passed|failed)' "$dir/test.log" | tail -n 1 |
           tr -d '=' | sed 's/^ *//; s/ *$//' || true)
  versions=$(grep -o 'torch [^,]*, transformers [^,]*, numpy [^,]*, OpenCV .*' \
             "$dir/test.log" | tail -n 1 || true)
  bin="$dir/venv/bin"
  if [ ! -d "$out/tiny" ] && [ -x "$bin/kosmos-ros" ]; then
    "$bin/kosmos-ros" make-tiny-model "$out/tiny" > /dev/null
    "$bin/python" - "$out" <<'EOF'
import sys
import zlib
import struct
# Stored PNGs from a fixed byte pattern: the same pixels for every leg,
# whatever numpy or OpenCV version wrote them.
for index, (width, height) in enumerate(((640, 480), (320, 240))):
    rows = b''.join(b'\0' + bytes((x * 7 + y * 13 + index * 31 + c * 85) % 256
                                  for x in range(width) for c in range(3))
                    for y in range(height))
    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data +
                struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
    png = (b'\x89PNG\r\n\x1a\n' +
           chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)) +
           chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b''))
    open('%s/image%d.png' % (sys.argv[1], index), 'wb').write(png)
EOF
  fi
  same=
  if [ -x "$bin/kosmos-ros" ] && [ -d "$out/tiny" ]; then
    for attention in auto eager; do
      model=(--model "$out/tiny" --device cpu --json
             --attn-implementation "$attention")
      {
        "$bin/kosmos-ros" caption "$out/image0.png" "$out/image1.png" "${model[@]}"
        "$bin/kosmos-ros" caption "$out/image0.png" "${model[@]}" --prompt "$prompt"
        "$bin/kosmos-ros" locate "$out/image0.png" "${phrases[@]}" "${model[@]}"
        "$bin/kosmos-ros" ask "$out/image1.png" 'What is this object?' \
          --box 40 30 200 180 "${model[@]}"
      } > "$dir/outputs-$attention.json" 2> "$dir/outputs.err" ||
        same="CLI failed (see $dir/outputs.err)"
    done
    if [ -z "$same" ] && [ -z "$reference" ]; then
      reference=$leg; same="the reference"
    elif [ -z "$same" ]; then
      # Only transformers differs between the 3.11 and 5.20 legs: exact.
      exact=()
      [ "$leg" != 5.20 ] || [ "$reference" != 3.11 ] || exact=(--exact)
      for attention in eager auto; do
        verdict=$("$bin/python" tools/compare_outputs.py "${exact[@]}" \
          "$dir/outputs-$attention.json" \
          "$out/$reference/outputs-$attention.json") || failed=1
        same+="${same:+; }$attention attention: $verdict"
        exact=()  # auto is sdpa, whose kernels may round apart
      done
      same="vs $reference: $same"
    else
      failed=1
    fi
  fi
  summary+=("$leg: $result ($counts) in $(( $(date +%s) - start )) s; Python $version, $versions; CLI outputs ${same:-not run}")
done
echo
printf '[matrix] %s\n' "${summary[@]}"
exit "$failed"
