#!/usr/bin/env bash
# Run the test suite against a debug build of the compiled core under
# AddressSanitizer: out-of-bounds accesses and use-after-free in the core
# abort the run. The build goes to a temporary copy of the tree.
# Extra arguments go to pytest (default: the whole suite).
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

git -C "$src" ls-files -z | (cd "$src" && xargs -0 cp --parents -t "$work")
cd "$work"
export CFLAGS="-fsanitize=address -fno-omit-frame-pointer -g"
export LDFLAGS="-fsanitize=address"
SMTPC_DEBUG=1 python setup.py -q build_ext --inplace 2>&1 | grep -v "^warning" || true
nm -D smtpc/_core*.so | grep -q __asan_report  # really instrumented

# The interpreter is not instrumented: load the runtime first, and leave leak
# detection to the interpreter's own accounting.
export LD_PRELOAD="$(gcc -print-file-name=libasan.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"
# Every object from malloc, so that an overrun of a small bytes object is
# caught rather than landing in one of pymalloc's pools.
export PYTHONMALLOC=malloc
python -c "import smtpc.core as c; assert c.IMPLEMENTATION == 'c'"
python -m pytest -q -p no:cacheprovider "${@:-tests}"
