"""Authentication, guards and origin checks.

    python examples/auth.py                  # ws://127.0.0.1:8000/me?token=alice-token

Two users with bearer tokens (``alice-token``, ``admin-token``), sent as ``Authorization: Bearer`` or,
from a browser, as ``?token=``. ``/me`` needs someone authenticated (401 otherwise), ``/admin`` an
administrator (403 for alice). Browsers are allowed from ``http://127.0.0.1:8000`` and
``https://*.example.com`` only (403 "Origin not allowed" from anywhere else); scripts without an
``Origin`` header are let in. Five handshakes a second per address, bursts of ten.
"""

from __future__ import annotations

import argparse
from typing import Any

import trio_ws
from trio_ws import BearerToken, IsAdminUser, IsAuthenticated, RateLimit, Router, WebSocket

USERS: dict[str, dict[str, Any]] = {
    "alice-token": {"name": "alice", "roles": ["user"]},
    "admin-token": {"name": "root", "roles": ["admin"]},
}


def verify(token: str) -> dict[str, Any] | None:
    return USERS.get(token)


router = Router(
    origins=["http://127.0.0.1:8000", "https://*.example.com"],
    rate_limit=RateLimit(rps=5, burst=10),
    auth=[BearerToken(verify, query_param="token")],
    guards=[IsAuthenticated()],
)


@router.websocket("/me")
async def me(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_json({"hello": ws.user["name"]})


@router.websocket("/admin", guards=[IsAuthenticated(), IsAdminUser()])
async def admin(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_json({"admin": ws.user["name"], "users": sorted(u["name"] for u in USERS.values())})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    trio_ws.run(router, args.host, args.port)
