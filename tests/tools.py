"""The outside tools some checks use (gcloud, terraform, Chromium), skipped or failed when missing."""

from __future__ import annotations

import os

import pytest


def require(tool: str) -> str:
    """The installed tool's path. Where CI sets ``FIMFLOW_REQUIRE_TOOLS=1`` a missing tool fails the test;
    elsewhere the test skips."""
    import shutil

    path = shutil.which(tool)
    if path is None:
        if os.environ.get("FIMFLOW_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{tool} is not installed; this check needs it")
        pytest.skip(f"{tool} is not installed")
    return path
