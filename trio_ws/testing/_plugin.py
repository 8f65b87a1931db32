"""pytest plugin (entry point ``pytest11``): the ``ws_test_client`` fixture factory."""

from __future__ import annotations

import pytest

from . import open_test_client


@pytest.fixture
def ws_test_client() -> object:
    """Returns :func:`trio_ws.testing.open_test_client`, for ``async with ws_test_client(handler)``."""
    return open_test_client
