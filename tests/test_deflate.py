"""permessage-deflate over real connections: with the websockets library on both ends, our own
client, the test client, and a decompression bomb over TCP."""

from __future__ import annotations

import json
import tracemalloc
import zlib

import pytest
import trio
import websockets.asyncio.server as ws_server
import websockets.extensions.permessage_deflate as pmd
import websockets.sync.client as ws_sync
from helpers import frame, websockets_asyncio_server

from trio_ws import DeflateOptions, WebSocket, open_websocket, open_websocket_server, open_websocket_url
from trio_ws.protocol import Connection, ResponseParser, Role, build_request
from trio_ws.testing import open_test_client

ONE_KIB = json.dumps([{"id": i, "name": f"user{i}", "online": i % 2 == 0} for i in range(40)])[:1024]
SIXTY_FOUR_KIB = json.dumps([{"id": i, "tags": ["a", str(i)], "score": i * 1.5} for i in range(3000)])[:65536]


async def echo_with_extensions(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text(json.dumps(ws.extensions))
    async for message in ws.iter_text():
        await ws.send_text(message)


@pytest.mark.parametrize(
    ("factory", "expected"),
    [
        (  # what the websockets client offers by default: client_max_window_bits without a value
            pmd.ClientPerMessageDeflateFactory(client_max_window_bits=True),
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
        ),
        (
            pmd.ClientPerMessageDeflateFactory(client_max_window_bits=None),
            "permessage-deflate; server_max_window_bits=12",
        ),
        (
            pmd.ClientPerMessageDeflateFactory(server_max_window_bits=10, client_max_window_bits=9),
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9",
        ),
        (
            pmd.ClientPerMessageDeflateFactory(
                server_no_context_takeover=True, client_no_context_takeover=True, client_max_window_bits=None
            ),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12",
        ),
    ],
)
async def test_websockets_client_negotiates_with_our_server(
    factory: pmd.ClientPerMessageDeflateFactory, expected: str
) -> None:
    async with open_websocket_server(echo_with_extensions, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.port}/"

        def client() -> list[str]:
            with ws_sync.connect(url, extensions=[factory], compression=None, max_size=None) as conn:
                negotiated = json.loads(str(conn.recv(timeout=5)))
                assert [e.name for e in conn.protocol.extensions] == ["permessage-deflate"]
                for message in (ONE_KIB, SIXTY_FOUR_KIB, "tiny", SIXTY_FOUR_KIB * 8, ONE_KIB):
                    conn.send(message)
                    assert conn.recv(timeout=5) == message
                return negotiated  # type: ignore[no-any-return]

        assert await trio.to_thread.run_sync(client) == [expected]


async def test_no_compression_when_the_server_turns_it_off() -> None:
    async with open_websocket_server(echo_with_extensions, "127.0.0.1", 0, compression=None) as server:
        url = f"ws://127.0.0.1:{server.port}/"

        def client() -> tuple[list[str], int]:
            with ws_sync.connect(url) as conn:  # offers permessage-deflate
                negotiated = json.loads(str(conn.recv(timeout=5)))
                conn.send(ONE_KIB)
                assert conn.recv(timeout=5) == ONE_KIB
                return negotiated, len(conn.protocol.extensions)

        assert await trio.to_thread.run_sync(client) == ([], 0)


async def describe_and_echo(conn: ws_server.ServerConnection) -> None:
    """A websockets server handler: first says what it negotiated, then echoes."""
    ext = conn.protocol.extensions
    await conn.send(json.dumps([vars(e) for e in ext], default=str))
    async for message in conn:
        await conn.send(message)


@pytest.mark.parametrize(
    ("options", "server_factory", "expected"),
    [
        (DeflateOptions(), None, {"remote_max_window_bits": 12, "local_max_window_bits": 12}),
        (
            DeflateOptions(no_context_takeover=True, peer_no_context_takeover=True),
            None,
            {"remote_no_context_takeover": True, "local_no_context_takeover": True},
        ),
        (DeflateOptions(window_bits=9, peer_window_bits=15), None, {"remote_max_window_bits": 9}),
        # The smaller of what we ask and what the server likes.
        (
            DeflateOptions(peer_window_bits=10),
            pmd.ServerPerMessageDeflateFactory(server_max_window_bits=11),
            {"local_max_window_bits": 10},
        ),
        (
            DeflateOptions(peer_window_bits=13),
            pmd.ServerPerMessageDeflateFactory(server_max_window_bits=11),
            {"local_max_window_bits": 11},
        ),
    ],
)
async def test_our_client_negotiates_with_websockets_server(
    options: DeflateOptions,
    server_factory: pmd.ServerPerMessageDeflateFactory | None,
    expected: dict[str, object],
) -> None:
    kwargs = {} if server_factory is None else {"extensions": [server_factory], "compression": None}
    with websockets_asyncio_server(describe_and_echo, max_size=None, **kwargs) as port:
        async with open_websocket_url(
            f"ws://127.0.0.1:{port}/", compression=options, max_message_size=None
        ) as ws:
            [theirs] = json.loads(await ws.receive_text())
            assert theirs.items() >= expected.items()
            assert ws.extensions
            assert ws.extensions[0].startswith("permessage-deflate")
            for message in (ONE_KIB, SIXTY_FOUR_KIB, "tiny", SIXTY_FOUR_KIB * 8, ONE_KIB):
                await ws.send_text(message)
                assert await ws.receive_text() == message


async def test_our_client_without_compression_against_websockets_server() -> None:
    with websockets_asyncio_server(describe_and_echo) as port:
        async with open_websocket("127.0.0.1", port, compression=None) as ws:
            assert json.loads(await ws.receive_text()) == []
            assert ws.extensions == []
            await ws.send_text(ONE_KIB)
            assert await ws.receive_text() == ONE_KIB


@pytest.mark.parametrize(
    ("server", "client", "negotiated"),
    [
        (DeflateOptions(), DeflateOptions(), True),
        (None, DeflateOptions(), False),
        (DeflateOptions(), None, False),
    ],
)
async def test_our_client_and_server_and_test_client(
    server: DeflateOptions | None, client: DeflateOptions | None, negotiated: bool
) -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_json({"extensions": ws.extensions})
        await ws.send_text(await ws.receive_text())

    async with (
        open_websocket_server(handler, "127.0.0.1", 0, compression=server) as srv,
        open_websocket("127.0.0.1", srv.port, compression=client) as ws,
    ):
        assert bool((await ws.receive_json())["extensions"]) is negotiated
        assert bool(ws.extensions) is negotiated
        await ws.send_text(SIXTY_FOUR_KIB)
        assert await ws.receive_text() == SIXTY_FOUR_KIB
    async with open_test_client(handler) as test_client:  # the test client negotiates too
        assert (await test_client.receive_json())["extensions"] == [
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
        ]


async def test_a_10mb_bomb_is_refused_with_1009_and_others_keep_being_served() -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -12)
    bomb = b"".join(compressor.compress(b"\x00" * 2**20) for _ in range(10))
    bomb = (bomb + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]  # 10 MiB of zeros in about 10 KB

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        async for message in ws.iter_bytes():
            await ws.send_bytes(message)

    async with open_websocket_server(handler, "127.0.0.1", 0) as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        request, _ = build_request(
            f"127.0.0.1:{server.port}", "/", extensions="permessage-deflate; client_max_window_bits"
        )
        await stream.send_all(request)
        parser = ResponseParser()
        response = None
        while response is None:
            response = parser.receive_data(await stream.receive_some())
        assert response.status == 101
        assert "permessage-deflate" in response.headers["sec-websocket-extensions"]
        async with open_websocket("127.0.0.1", server.port) as bystander:
            tracemalloc.start()
            try:
                await stream.send_all(frame(0x2, bomb, rsv=4))
                conn = Connection(Role.CLIENT)
                while conn.close_received is None:
                    data = await stream.receive_some()
                    assert data, "the server closed without a close frame"
                    conn.receive_data(data)
                close = conn.close_received
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert close.code == 1009
            assert peak < 6 * 2**20  # the 1 MiB limit and its copies, never the 10 MiB
            await bystander.send_bytes(b"still here" * 1000)
            assert await bystander.receive_bytes() == b"still here" * 1000
        await stream.aclose()
