"""Shared fixtures."""

import importlib
import os
from types import ModuleType

import pytest
from postfix import *  # noqa: F403 - the private Postfix instance
from servers import *  # noqa: F403 - fixtures shared by all test files

# --- Core twins ------------------------------------------------------------
# Every core test runs against the compiled smtpc._core and the pure-Python
# smtpc._core_py. SMTPC_NO_EXTENSIONS=1 skips the compiled one; otherwise a
# missing build is an error, so a test run cannot fall back to the twin unseen.

CORE_IMPLEMENTATIONS = {"c": "smtpc._core", "py": "smtpc._core_py"}


@pytest.fixture(params=sorted(CORE_IMPLEMENTATIONS))
def core_impl(request: pytest.FixtureRequest) -> ModuleType:
    """The core module under test: ``smtpc._core`` or ``smtpc._core_py``."""
    if request.param == "c" and os.environ.get("SMTPC_NO_EXTENSIONS") == "1":
        pytest.skip("SMTPC_NO_EXTENSIONS=1: the compiled core is not used")
    return importlib.import_module(CORE_IMPLEMENTATIONS[request.param])
