"""Build the compiled core unless SMTPC_NO_EXTENSIONS=1 asks for pure Python.

SMTPC_DEBUG=1 builds with annotation, line tracing and invariant checks.
SMTPC_OPTIMIZE_SIZE=1 compiles the core for size (-Os), as an embedded
toolchain would.
"""

import os

from setuptools import setup

ext_modules = []
if os.environ.get("SMTPC_NO_EXTENSIONS") != "1":
    from Cython.Build import cythonize
    from setuptools import Extension

    debug = os.environ.get("SMTPC_DEBUG") == "1"
    cflags = ["-Os"] if os.environ.get("SMTPC_OPTIMIZE_SIZE") == "1" else ["-O2"]
    macros = []
    if debug:
        cflags = ["-O0", "-g"]
        macros = [("CYTHON_TRACE_NOGIL", "1"), ("SMTPC_CHECK_INVARIANTS", "1")]
    ext_modules = cythonize(
        [
            Extension(
                "smtpc._core",
                ["smtpc/_core.pyx"],
                extra_compile_args=cflags,
                define_macros=macros,
            )
        ],
        compiler_directives={
            "language_level": "3",
            "embedsignature": True,
            "linetrace": debug,
        },
        annotate=debug,
    )

setup(ext_modules=ext_modules)
