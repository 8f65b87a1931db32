"""A FastAPI application on ``serve_asgi``: a WebSocket endpoint with a path parameter and a
dependency, and an HTTP route, over real TCP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
import websockets.exceptions
from fastapi import Depends, FastAPI, Query, WebSocket, WebSocketDisconnect, WebSocketException, status
from websockets.trio.client import connect

from trio_ws import WebSocketServer
from trio_ws.asgi import open_asgi_server

app = FastAPI()


async def current_user(websocket: WebSocket, token: Annotated[str | None, Query()] = None) -> str:
    if token is None:
        raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION, reason="no token")
    return f"user-{token}"


@app.get("/items/{item_id}")
async def read_item(item_id: int) -> dict[str, int]:
    return {"item_id": item_id, "double": item_id * 2}


@app.websocket("/rooms/{room}")
async def room(websocket: WebSocket, room: str, user: Annotated[str, Depends(current_user)]) -> None:
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_json({"room": room, "user": user, "text": text})
    except WebSocketDisconnect:
        pass


@pytest.fixture
async def server() -> AsyncIterator[WebSocketServer]:
    async with open_asgi_server(app, "127.0.0.1", 0) as server:
        yield server


async def test_a_path_parameter_and_a_dependency_reach_the_endpoint(server: WebSocketServer) -> None:
    async with connect(f"ws://127.0.0.1:{server.port}/rooms/lobby?token=42") as ws:
        await ws.send("hi")
        assert await ws.recv() == '{"room":"lobby","user":"user-42","text":"hi"}'


async def test_a_dependency_that_refuses_closes_with_its_code(server: WebSocketServer) -> None:
    # A WebSocketException before accept: FastAPI sends websocket.close, which refuses with 403.
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with connect(f"ws://127.0.0.1:{server.port}/rooms/lobby"):
            pass
    assert refused.value.response.status_code == 403


async def test_http_routes_and_validation_errors(server: WebSocketServer) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        ok = await client.get("/items/21")
        invalid = await client.get("/items/abc")
        docs = await client.get("/openapi.json")
    assert ok.json() == {"item_id": 21, "double": 42}
    assert invalid.status_code == 422
    assert "/rooms/{room}" not in docs.json()["paths"]  # (WebSocket routes are not in OpenAPI)
    assert "/items/{item_id}" in docs.json()["paths"]
