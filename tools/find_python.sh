# Sourced by tools/lock.sh and tools/matrix.sh.
# find_python 3.10: an interpreter of that version with venv - $PYTHON3_10,
# else python3.10 on PATH, else pyenv's.
find_python() {
  local var="PYTHON${1/./_}" candidate
  for candidate in "${!var:-}" "$(command -v "python$1" 2>/dev/null || true)" \
      "$HOME"/.pyenv/versions/"$1".*/bin/"python$1"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && \
        "$candidate" -c 'import venv' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}
