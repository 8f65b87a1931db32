"""JSON request/response over WebSocket, with typed routes.

    python examples/json_api.py              # ws://127.0.0.1:8000/accounts/<account_id>
    python examples/json_api.py --port 9000 --workers 2

Each request is ``{"id": 1, "method": "deposit", "params": {"amount": 12.5}}``; each answer is
``{"id": 1, "result": ...}`` or ``{"id": 1, "error": "..."}``. ``account_id`` is an ``int``: a path
like ``/accounts/abc`` does not match, and the handshake is refused with 404.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from trio_ws import CloseCode, Router, WebSocket, WebSocketClose, run_cli

router = Router(unmatched_status=404)
balances: dict[int, float] = {}


def deposit(account_id: int, amount: float) -> float:
    if not isinstance(amount, (int, float)) or amount <= 0:
        raise ValueError("amount must be a positive number")
    balances[account_id] = balances.get(account_id, 0.0) + amount
    return balances[account_id]


def balance(account_id: int) -> float:
    return balances.get(account_id, 0.0)


METHODS: dict[str, Any] = {"deposit": deposit, "balance": balance}


@router.websocket("/accounts/{account_id}")
async def accounts(ws: WebSocket, account_id: int) -> None:
    await ws.accept()
    async for request in ws.iter_json():  # invalid JSON closes with 1007
        if not isinstance(request, dict) or "method" not in request:
            raise WebSocketClose(CloseCode.UNSUPPORTED_DATA, "expected {id, method, params}")
        answer: dict[str, Any] = {"id": request.get("id")}
        method = METHODS.get(request["method"])
        try:
            if method is None:
                raise ValueError(f"no method {request['method']!r}")
            answer["result"] = method(account_id, **request.get("params", {}))
        except (TypeError, ValueError) as exc:
            answer["error"] = str(exc)
        await ws.send_json(answer)


@router.websocket("/rates/{currency:str}/{day:int}")
async def rates(ws: WebSocket, currency: str, day: int) -> None:
    await ws.accept()
    await ws.send_json({"currency": currency.upper(), "day": day, "rate": round(1 + day / 1000, 4)})


if __name__ == "__main__":  # the command line: --host, --port, --workers, --ssl-certfile ...
    run_cli([f"{Path(__file__).stem}:router", *sys.argv[1:]])
