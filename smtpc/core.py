"""The core the rest of smtpc uses: the compiled ``_core`` or its Python twin.

``SMTPC_NO_EXTENSIONS=1`` and interpreters other than CPython get the twin;
otherwise the compiled module is used when it was built. ``IMPLEMENTATION``
says which one was loaded: ``"c"`` or ``"py"``.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

__all__ = [
    "DEFAULT_BUFFER_SIZE",
    "IMPLEMENTATION",
    "MAX_COMMAND_LINE",
    "MAX_DOMAIN",
    "MAX_LOCAL_PART",
    "MAX_PATH",
    "MIN_BUFFER_SIZE",
    "Base64Encoder",
    "DataEncoder",
    "LineEncoder",
    "Emitter",
    "QuotedPrintableEncoder",
    "b64decode",
    "b64encode",
    "check_argument",
    "check_path",
    "md4",
]

IMPLEMENTATION: str

_use_twin = (
    os.environ.get("SMTPC_NO_EXTENSIONS") == "1" or sys.implementation.name != "cpython"
)

# Type checkers read the twin, the typed source of truth; _core.pyi mirrors it.
if not TYPE_CHECKING and not _use_twin:
    try:
        from smtpc._core import (
            DEFAULT_BUFFER_SIZE,
            MAX_COMMAND_LINE,
            MAX_DOMAIN,
            MAX_LOCAL_PART,
            MAX_PATH,
            MIN_BUFFER_SIZE,
            Base64Encoder,
            DataEncoder,
            Emitter,
            LineEncoder,
            QuotedPrintableEncoder,
            b64decode,
            b64encode,
            check_argument,
            check_path,
            md4,
        )

        IMPLEMENTATION = "c"
    except ImportError:
        _use_twin = True

if TYPE_CHECKING or _use_twin:
    from smtpc._core_py import (
        DEFAULT_BUFFER_SIZE,
        MAX_COMMAND_LINE,
        MAX_DOMAIN,
        MAX_LOCAL_PART,
        MAX_PATH,
        MIN_BUFFER_SIZE,
        Base64Encoder,
        DataEncoder,
        Emitter,
        LineEncoder,
        QuotedPrintableEncoder,
        b64decode,
        b64encode,
        check_argument,
        check_path,
        md4,
    )

    IMPLEMENTATION = "py"
