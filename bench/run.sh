#!/bin/sh
# Run every benchmark once, smtpc against its peers in the same run, and
# write the figures to bench/results.json (about 5 minutes on 2 cores).
# Needs: the compiled core (python setup.py build_ext --inplace), Postfix's
# smtp-sink and smtp-source, aiosmtplib, pytest-benchmark, taskset; the BDAT
# figures of test_extensions_bench.py need root, for the private Postfix
# instance of tests/postfix.py (skipped otherwise). test_bulk.py adds about
# 1.5 minutes, test_extensions_bench.py about 40 seconds.
set -e
cd "$(dirname "$0")/.."
exec python -m pytest bench/ -p no:cacheprovider --bench-json bench/results.json "$@"
