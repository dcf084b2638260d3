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

# uv installs the ~190 other packages: a fresh virtualenv in about 20 s where pip took about 5 min
# (same versions; checked with `pip freeze` on both). pip still installs torch (it honours this
# machine's pip configuration and TORCH_INDEX_URL for the CPU build; uv, seeing torch installed, keeps
# it) and takes over if uv fails, e.g. on a machine whose registry only pip's configuration names.
UV_VERSION="0.13.9"

# install VENV SPEC...: pip's arguments after `install`, given to uv first. uv reads none of pip's
# configuration: a registry that pip is pointed at instead of PyPI (PIP_INDEX_URL, or index-url in
# pip's configuration files) is handed to uv; anything else uv lacks makes it fail, and pip installs.
install() {
  local venv="$1"
  shift
  local pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet) index
  index="${PIP_INDEX_URL:-$("${pip[@]}" config get global.index-url 2>/dev/null \
    || "${pip[@]}" config get install.index-url 2>/dev/null || true)}"
  if "${pip[@]}" install "uv==$UV_VERSION" \
    && UV_DEFAULT_INDEX="${index:-https://pypi.org/simple}" \
      "$venv/bin/python" -m uv pip install --quiet --python "$venv/bin/python" "$@"; then
    return
  fi
  log "uv could not install; installing with pip (several minutes)"
  "${pip[@]}" install --upgrade pip
  "${pip[@]}" install "$@"
}

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
  install "$VENV" -e ".[$EXTRAS]" -c requirements/constraints.txt
  echo "$want" > "$stamp"
}

# The policy pack's own virtualenv: pulumi-policy pins protobuf 5.29, which the main virtualenv's
# TensorFlow and ONNX cannot use, so its rules are tested (and run by the Pulumi CLI) from here.
POLICY_VENV="${POLICY_VENV:-.venv-policy}"

setup_policy() {
  if [[ ! -x "$POLICY_VENV/bin/python" ]]; then
    log "creating virtualenv $POLICY_VENV (policy pack)"
    "$PYTHON" -m venv "$POLICY_VENV"
  fi
  local stamp="$POLICY_VENV/.setup-stamp" want
  want="$(cat pyproject.toml requirements/policy-constraints.txt dev.sh | sha256sum | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return
  fi
  log "installing the policy pack's virtualenv [policy]"
  install "$POLICY_VENV" -e ".[policy]" -c requirements/policy-constraints.txt
  echo "$want" > "$stamp"
}

# The type checks and the policy pack's tests, one after the other (run beside the main suite).
side_checks() {
  log "mypy"
  "$VENV/bin/mypy" || return
  log "mypy (policy pack, in $POLICY_VENV)"
  "$POLICY_VENV/bin/mypy" --follow-imports=silent infra/policy/*.py || return
  log "pytest (policy pack, in $POLICY_VENV)"
  "$POLICY_VENV/bin/python" -m pytest tests/infra/test_policy.py -p no:cacheprovider
}

run_tests() {
  local bin="$VENV/bin"
  log "ruff check"
  "$bin/ruff" check .
  log "ruff format --check"
  "$bin/ruff" format --check .
  if (( $# )); then
    # A chosen set of tests: run alone (they may be timing tests), then the other checks.
    log "pytest $*"
    "$bin/python" -m pytest "$@"
    side_checks
    return
  fi
  # Tests marked `timing` compare a few milliseconds of wall clock: a busy neighbour on the other
  # core decides their outcome (CI failed them with mypy beside them), so the files that mark them
  # run first, alone; every other file runs after, beside mypy and the policy pack. (By file, not by
  # mark: a test marked some other way still runs, in the second part.)
  local timing_files=() ignored=() timing_status=0 side_log side_pid side_status=0 status=0
  mapfile -t timing_files < <(grep -rlE 'mark\.timing' tests --include='*.py' | sort)
  if (( ${#timing_files[@]} )); then
    log "pytest ${timing_files[*]} (alone: timing tests)"
    "$bin/python" -m pytest -p no:cacheprovider "${timing_files[@]}" || timing_status=$?
    if (( timing_status == 5 )); then
      timing_status=0  # those files hold no test now: nothing to run alone
    fi
  fi
  for file in "${timing_files[@]}"; do ignored+=("--ignore=$file"); done
  # The rest runs file by file on TEST_WORKERS processes (pytest-xdist; default: one per core, at
  # most 4): most of a file's time is the servers and workers it starts importing frameworks, so
  # two workers on two cores take the suite from about 8.5 to 6.5 minutes. A file stays on one
  # worker (--dist loadfile): its module-scoped servers start once. mypy and the policy pack run
  # beside it; their output is shown after the suite's.
  local workers="${TEST_WORKERS:-$(( $(nproc) < 4 ? $(nproc) : 4 ))}"
  side_log="$(mktemp)"
  side_checks > "$side_log" 2>&1 &
  side_pid=$!
  log "pytest, the other files, on $workers workers (mypy and the policy pack beside it)"
  "$bin/python" -m pytest -n "$workers" --dist loadfile "${ignored[@]}" || status=$?
  wait "$side_pid" || side_status=$?
  cat "$side_log"
  rm -f "$side_log"
  local failed=0
  if (( timing_status != 0 )); then
    log "pytest of the timing tests failed (exit $timing_status)"
    failed=$timing_status
  fi
  if (( status != 0 )); then
    log "pytest failed (exit $status)"
    if (( failed == 0 )); then failed=$status; fi
  fi
  if (( side_status != 0 )); then
    log "mypy or the policy pack failed (exit $side_status)"
    if (( failed == 0 )); then failed=$side_status; fi
  fi
  return "$failed"
}

command="${1:-}"
shift || true
case "$command" in
  setup) setup; setup_policy ;;
  demo) setup; "$VENV/bin/python" -m examples.digits.demo "$@" ;;
  scenarios) setup; "$VENV/bin/python" -m examples.scenarios.demo "$@" ;;
  test) setup; setup_policy; run_tests "$@" ;;
  *)
    echo "usage: ./dev.sh demo|scenarios|test|setup [args...]" >&2
    exit 2
    ;;
esac
