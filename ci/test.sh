#!/usr/bin/env bash
# Run the whole test suite twice: with the compiled core, then with the
# pure-Python twin. Extra arguments go to pytest.
# pytest exits non-zero on failures and with 5 when it collected no tests;
# set -e makes either one fail this script.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "=== smtpc with the compiled core"
python -c "import smtpc.core as c; assert c.IMPLEMENTATION == 'c', c.IMPLEMENTATION"
python -m pytest "$@"

echo "=== smtpc with the pure-Python twin (SMTPC_NO_EXTENSIONS=1)"
export SMTPC_NO_EXTENSIONS=1
python -c "import smtpc.core as c; assert c.IMPLEMENTATION == 'py', c.IMPLEMENTATION"
python -m pytest "$@"
