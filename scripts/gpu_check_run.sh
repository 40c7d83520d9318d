#!/usr/bin/env bash
# The GPU check in one call on a GPU machine whose Python has torch but not ganqp's other
# needs (the lent H200's Python 3.12 lacks hydra-core, omegaconf, the antlr4 runtime and
# pytorch-fid, and reaches no package index). Carry them as wheels in .whl/:
#
#   bash scripts/gpu_check_run.sh fetch          # here, with a package index: fill .whl/
#   bash scripts/gpu_check_run.sh [OUT]          # there: install into /tmp/site, run the check
#   bash scripts/gpu_check_run.sh install SITE   # the install step alone (tested here)
#
# The check writes gpu_check.md and gpu_check.json into OUT (default: $OUT, else
# ./gpu_check_out). ganqp itself comes from this working tree, copied in its installed
# layout (conf/ becomes ganqp_cli/conf, as pyproject.toml maps it), so the check runs the
# code that travelled, never a stale wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=(hydra-core==1.3.8 omegaconf==2.3.1 pytorch-fid==0.3.0)
ANTLR=antlr4-python3-runtime==4.9.3  # omegaconf pins 4.9.*; PyPI has only its sdist

fetch() {
    mkdir -p .whl
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
    "$PYTHON" -m pip wheel -q --no-deps -w .whl "$ANTLR"  # pure Python: any 3.x
    ls .whl
}

install() {
    local site=$1
    ls .whl/*.whl >/dev/null 2>&1 || { echo "no wheels in .whl/: run '$0 fetch' first" >&2; exit 2; }
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" .whl/*.whl
    rm -rf "$site/ganqp_cli"
    cp -r ganqp_cli "$site/ganqp_cli"
    cp -r conf "$site/ganqp_cli/conf"
    find "$site/ganqp_cli" -name __pycache__ -prune -exec rm -rf {} +
}

case "${1:-}" in
    fetch) fetch ;;
    install) install "${2:?install needs a target folder}" ;;
    *)
        out=${1:-${OUT:-gpu_check_out}}
        install /tmp/site
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
        "$PYTHON" scripts/gpu_check.py --out "$out"
        ;;
esac
