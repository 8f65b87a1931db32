"""Router: typed path parameters, explicit converters, unmatched paths, mounts, route-level options;
through the test client, our client and the websockets library's client over TCP."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import trio
import websockets.exceptions
import websockets.sync.client as ws_sync

from trio_ws import (
    HandshakeRejected,
    Router,
    WebSocket,
    WebSocketDisconnect,
    open_websocket,
    open_websocket_server,
)
from trio_ws.testing import open_test_client


def typed(value: Any) -> list[Any]:
    return [str(value) if isinstance(value, uuid.UUID) else value, type(value).__name__]


def seed_router() -> Router:
    """The routes of the seed documents (``/ws/...``), and the explicit-converter forms."""
    router = Router()

    @router.websocket("/ws/chat/{room_id}")
    async def chat(websocket: WebSocket, room_id: str) -> None:
        await websocket.accept()
        await websocket.send_text(f"Joined room: {room_id}")

    @router.websocket("/ws/user/{user_id}")
    async def user_ws(websocket: WebSocket, user_id: int) -> None:
        await websocket.accept()
        await websocket.send_json({"user_id": user_id, "type": type(user_id).__name__})

    @router.websocket("/ws/price/{price}")
    async def price_ws(websocket: WebSocket, price: float) -> None:
        await websocket.accept()
        await websocket.send_json(typed(price))

    @router.websocket("/ws/feature/{enabled}")
    async def feature_ws(websocket: WebSocket, enabled: bool) -> None:
        await websocket.accept()
        await websocket.send_json(typed(enabled))

    @router.websocket("/ws/user/{user_id}/channel/{channel_id}")
    async def multi_param(websocket: WebSocket, user_id: int, channel_id: str) -> None:
        await websocket.accept()
        await websocket.send_json({"user_id": user_id, "channel_id": channel_id})

    @router.websocket("/ws/doc/{doc}")
    async def doc(websocket: WebSocket, doc: uuid.UUID) -> None:
        await websocket.accept()
        await websocket.send_json(typed(doc))

    @router.websocket("/ws/item/{item:int}")
    async def item(websocket: WebSocket, **params: Any) -> None:
        await websocket.accept()
        await websocket.send_json([*typed(params["item"]), websocket.path_params])

    @router.websocket("/files/{rest:path}")
    async def files(websocket: WebSocket, rest: str) -> None:
        await websocket.accept()
        await websocket.send_json(typed(rest))

    @router.websocket("/ws/user/{username}")  # after the int route: the values it refuses land here
    async def by_name(websocket: WebSocket, username: str) -> None:
        await websocket.accept()
        await websocket.send_json(["by_name", username])

    return router


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/ws/chat/lobby", "Joined room: lobby"),
        ("/ws/chat/caf%C3%A9", "Joined room: café"),  # matched percent-decoded
        ("/ws/user/42", {"user_id": 42, "type": "int"}),
        ("/ws/user/-7", {"user_id": -7, "type": "int"}),
        ("/ws/price/19.99", [19.99, "float"]),
        ("/ws/price/3", [3.0, "float"]),
        ("/ws/feature/true", [True, "bool"]),
        ("/ws/feature/False", [False, "bool"]),
        ("/ws/feature/1", [True, "bool"]),
        ("/ws/feature/0", [False, "bool"]),
        ("/ws/user/42/channel/general", {"user_id": 42, "channel_id": "general"}),
        (
            "/ws/doc/12345678-1234-5678-1234-567812345678",
            ["12345678-1234-5678-1234-567812345678", "UUID"],
        ),
        ("/ws/item/5", [5, "int", {"item": 5}]),
        ("/files/a/b/c.txt", ["a/b/c.txt", "str"]),
        ("/files/", ["", "str"]),
        # A value that does not convert: that route does not match, the next one may.
        ("/ws/user/abc", ["by_name", "abc"]),
    ],
)
async def test_typed_path_parameters(path: str, expected: Any) -> None:
    async with open_test_client(seed_router(), path) as client:
        message = await client.receive_text(timeout=5)
    assert (message if isinstance(expected, str) else json.loads(message)) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/ws/user/abc",
        "/ws/user/1.5",
        "/ws/user/+1",
        "/ws/user/1_000",
        "/ws/price/nan",
        "/ws/price/inf",
        "/ws/feature/yes",
        "/ws/doc/not-a-uuid",
        "/ws/item/x",
        "/ws/user/42/channel",
        "/nowhere",
        "/ws/chat/a/b",
        "/ws/chat/",
    ],
)
async def test_values_that_do_not_convert_do_not_match(path: str) -> None:
    router = seed_router()
    found = router.match(path)
    # Only "/ws/user/{username}" may take a value the int route refused.
    assert found is None or (found[0].name == "by_name" and path.startswith("/ws/user/"))
    if found is None:
        with pytest.raises(HandshakeRejected) as info:
            async with open_test_client(router, path):
                pass  # pragma: no cover
        assert info.value.status == 403


async def test_unmatched_status_is_configurable_and_seen_by_a_real_client() -> None:
    router = Router(unmatched_status=404)

    @router.websocket("/here")
    async def here(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("here")

    with pytest.raises(HandshakeRejected) as info:
        async with open_test_client(router, "/not-here"):
            pass  # pragma: no cover
    assert info.value.status == 404
    async with open_websocket_server(router, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.port}"

        def client() -> tuple[int, str]:
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                ws_sync.connect(f"{url}/not-here")
            with ws_sync.connect(f"{url}/here") as conn:
                return refused.value.response.status_code, str(conn.recv(timeout=5))

        assert await trio.to_thread.run_sync(client) == (404, "here")
    with pytest.raises(ValueError, match="4xx or 5xx"):
        Router(unmatched_status=200)


async def test_seed_routes_over_tcp_with_the_websockets_client() -> None:
    async with open_websocket_server(seed_router(), "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.port}"

        def client() -> list[str]:
            out = []
            for path in ("/ws/user/42", "/ws/chat/caf%C3%A9", "/ws/feature/false", "/ws/user/abc"):
                with ws_sync.connect(url + path) as conn:
                    out.append(str(conn.recv(timeout=5)))
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                ws_sync.connect(url + "/ws/price/abc")
            out.append(str(refused.value.response.status_code))
            return out

        assert await trio.to_thread.run_sync(client) == [
            '{"user_id":42,"type":"int"}',
            "Joined room: café",
            '[false,"bool"]',
            '["by_name","abc"]',
            "403",
        ]


async def test_mounted_routers_and_the_route_list() -> None:
    api = Router()

    @api.websocket("/items/{item_id}")
    async def item(ws: WebSocket, item_id: int) -> None:
        await ws.accept()
        await ws.send_json({"item": item_id, "path": ws.path})

    v2 = Router()

    @v2.websocket("/stream")
    async def stream(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("v2 stream")

    api.mount("/v2", v2)
    root = Router()

    @root.websocket("/")
    async def index(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("index")

    root.mount("/api", api)
    assert [(r.path, r.name) for r in root.routes] == [
        ("/", "index"),
        ("/api/items/{item_id}", "item"),
        ("/api/v2/stream", "stream"),
    ]

    # A route added to a mounted router after mounting is served too.
    @v2.websocket("/late")
    async def late(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("late")

    for path, expected in [
        ("/", "index"),
        ("/api/items/7", '{"item":7,"path":"/api/items/7"}'),
        ("/api/v2/stream", "v2 stream"),
        ("/api/v2/late", "late"),
    ]:
        async with open_test_client(root, path) as client:
            assert await client.receive_text(timeout=5) == expected
    for path in ("/api", "/api/items", "/v2/stream", "/api/v2"):
        with pytest.raises(HandshakeRejected):
            async with open_test_client(root, path):
                pass  # pragma: no cover


async def test_route_level_options_and_subprotocols() -> None:
    router = Router(max_message_size=1000)

    @router.websocket("/small")
    async def small(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text(str(len(await ws.receive_text())))

    @router.websocket("/big", max_message_size=100_000, max_queue=2, subprotocols=["graphql-ws", "json"])
    async def big(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_json([len(await ws.receive_text()), ws.subprotocol, ws.options.max_queue])

    async with open_websocket_server(router, "127.0.0.1", 0, subprotocols=["other"]) as server:
        async with open_websocket(
            "127.0.0.1", server.port, "/big", subprotocols=["json", "graphql-ws"]
        ) as ws:
            await ws.send_text("x" * 50_000)
            assert await ws.receive_json() == [50_000, "json", 2]  # the client's preference among the route's
            assert ws.subprotocol == "json"
        url = f"ws://127.0.0.1:{server.port}/big"

        def client() -> str | None:
            with ws_sync.connect(url, subprotocols=["graphql-ws"]) as conn:  # type: ignore[list-item]
                return conn.subprotocol

        assert await trio.to_thread.run_sync(client) == "graphql-ws"
        async with open_websocket("127.0.0.1", server.port, "/small", subprotocols=["json", "other"]) as ws:
            assert ws.subprotocol == "other"  # the router's routes fall back to the server's list
            await ws.send_text("x" * 50_000)
            with pytest.raises(WebSocketDisconnect) as info:
                await ws.receive_text()
            assert info.value.code == 1009


def test_registration_errors_are_clear() -> None:
    router = Router()

    async def handler(ws: WebSocket, room: str) -> None:
        raise AssertionError  # pragma: no cover

    with pytest.raises(ValueError, match="unknown converter 'number'"):
        router.add_route("/a/{room:number}", handler)
    with pytest.raises(ValueError, match="no parameter 'other'"):
        router.add_route("/a/{other}", handler)
    with pytest.raises(ValueError, match="twice"):
        router.add_route("/a/{room}/{room}", handler)
    with pytest.raises(ValueError, match="malformed"):
        router.add_route("/a/{room", handler)
    with pytest.raises(ValueError, match="starts with '/'"):
        router.add_route("a/{room}", handler)
    with pytest.raises(TypeError):
        router.add_route("/a/{room}", handler, max_mesage_size=1)  # a typo'd option
    with pytest.raises(ValueError, match="mount prefix"):
        router.mount("/api/", Router())
    with pytest.raises(ValueError, match="itself"):
        router.mount("/self", router)
    assert router.routes == []


def test_matching_order_and_static_routes() -> None:
    router = Router()

    async def a(ws: WebSocket) -> None:  # pragma: no cover
        pass

    async def b(ws: WebSocket, name: str) -> None:  # pragma: no cover
        pass

    router.add_route("/users/me", a, name="me")
    router.add_route("/users/{name}", b, name="user")
    router.add_route("/users.json", a, name="dot")  # a '.' in a route is literal
    me = router.match("/users/me")
    assert me is not None
    assert (me[0].name, me[1]) == ("me", {})
    other = router.match("/users/ann")
    assert other is not None
    assert (other[0].name, other[1]) == ("user", {"name": "ann"})
    assert router.match("/usersXjson") is None
    assert router.match("/users/me/") is None
    assert Router().match("/") is None
