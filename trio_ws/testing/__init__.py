"""Test a handler without a socket: the real server and client code paths over
``trio.testing.memory_stream_pair()``."""

from ._client import ReceiveTimeout, TestClient
from ._harness import TestHandshakeRejected, open_test_client

__all__ = ["ReceiveTimeout", "TestClient", "TestHandshakeRejected", "open_test_client"]
