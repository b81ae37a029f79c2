"""Helpers the tests share (a plain module: every conftest.py is imported as `conftest`)."""

from __future__ import annotations

import os
import socket

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, why: str) -> None:
    """Skip when a resource is missing here; in CI a missing resource is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must have this: {why}")
    pytest.skip(why)


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
