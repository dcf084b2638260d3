#!/usr/bin/env bash
# The two commands a fresh machine needs (Python 3.11 and a package registry, nothing else):
#   ./dev.sh demo   set up, then train, export, pack, verify and publish the example models
#   ./dev.sh test   set up, then lint, type-check and run the whole test suite
# Setup is incremental: a virtualenv in .venv, reinstalled only when the dependency files change.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
# PyTorch goes in first and pinned: an unpinned torch (asked for by us or by any other package)
# resolves to a multi-GB CUDA build. Set TORCH_INDEX_URL to PyTorch's CPU wheel index on machines
# whose registry serves only the CUDA build.
TORCH_VERSION="2.13.0"
EXTRAS="torch,tensorflow,onnx,serve,aws,gcp,infra,examples,dev"

log() { printf '[dev.sh] %s\n' "$*" >&2; }

setup() {
  if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  local stamp="$VENV/.setup-stamp" want
  want="$(cat pyproject.toml requirements/constraints.txt dev.sh | sha256sum | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return
  fi
  local pip=("$VENV/bin/python" -m pip --disable-pip-version-check --quiet)
  log "installing torch==$TORCH_VERSION (CPU)"
  "${pip[@]}" install --upgrade pip
  if [[ -n "${TORCH_INDEX_URL:-}" ]]; then
    "${pip[@]}" install "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX_URL"
  else
    "${pip[@]}" install "torch==$TORCH_VERSION"
  fi
  log "installing the project with extras [$EXTRAS]"
  "${pip[@]}" install -e ".[$EXTRAS]" -c requirements/constraints.txt
  echo "$want" > "$stamp"
}

run_tests() {
  local bin="$VENV/bin"
  log "ruff check"
  "$bin/ruff" check .
  log "ruff format --check"
  "$bin/ruff" format --check .
  log "mypy"
  "$bin/mypy"
  log "pytest"
  "$bin/python" -m pytest "$@"
}

command="${1:-}"
shift || true
case "$command" in
  setup) setup ;;
  demo) setup; "$VENV/bin/python" -m examples.digits.demo "$@" ;;
  test) setup; run_tests "$@" ;;
  *)
    echo "usage: ./dev.sh demo|test|setup [args...]" >&2
    exit 2
    ;;
esac
