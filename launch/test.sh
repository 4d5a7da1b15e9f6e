#!/usr/bin/env bash
# Install the stack (reused if already there), check lint and formatting, then run the whole test suite (real
# vLLM / DeepSpeed / Ray tests included). Extra arguments go to pytest, e.g.
# `bash launch/test.sh -m "not slow" tests/controllers`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$RLBAL_ROOT/launch/install.sh"
cd "$RLBAL_ROOT"
# Lint and format first: a second, not the suite's minutes, to learn the tree is off style (rules: pyproject.toml).
if ! "$RLBAL_VENV/bin/ruff" check --quiet .; then
    echo "[test] ruff check failed (above); fix it, or try: $RLBAL_VENV/bin/ruff check --fix ." >&2
    exit 1
fi
if ! "$RLBAL_VENV/bin/ruff" format --check --quiet .; then
    echo "[test] ruff format --check failed: the files above need formatting; run: $RLBAL_VENV/bin/ruff format ." >&2
    exit 1
fi
set +e
"$RLBAL_VENV/bin/python" -m pytest -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    # pytest: "no tests collected". Only acceptable when the project has no test files at all.
    if [ -n "$(find tests reward -name 'test_*.py' -print -quit 2>/dev/null)" ]; then
        echo "[test] pytest collected no tests although test files exist: failing" >&2
        exit 5
    fi
    echo "[test] no test files yet"
    exit 0
fi
exit "$rc"
