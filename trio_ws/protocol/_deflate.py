"""permessage-deflate (RFC 7692): negotiation on both ends and the per-message codec.

The codec is an :class:`Extension`: the connection hands it each piece of a compressed message as
it arrives, and :meth:`PerMessageDeflate.decode` inflates it in bounded steps, so a decompression
bomb fails with 1009 after at most ``max_message_size`` bytes of output.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import attrs

from ._errors import HandshakeError, ProtocolError
from ._extensions import Extension
from ._frames import CloseCode
from ._handshake import ExtensionOffer

__all__ = ["DeflateOptions", "PerMessageDeflate", "deflate_offer", "negotiate_deflate", "accept_deflate"]

NAME = "permessage-deflate"
_EMPTY_BLOCK = b"\x00\x00\xff\xff"  # ends every flushed message (§7.2.1), removed on the wire
_WINDOW_VALUES = {str(bits): bits for bits in range(8, 16)}  # "8".."15", no leading zeros (§7.1.2)


def _check_bits(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 8 <= value <= 15:
        raise ValueError(f"{attribute.name} must be 8..15, not {value}")


@attrs.frozen
class DeflateOptions:
    """Settings for permessage-deflate; the same class on the server and the client.

    - ``window_bits``: the LZ77 window this end compresses with (8-15; 2**bits bytes). It is also what
      the client announces as ``client_max_window_bits``.
    - ``peer_window_bits``: the largest window asked of the peer: the server answers a client that
      offers ``client_max_window_bits`` with this; the client offers ``server_max_window_bits`` with it
      when it is below 15 (and a second, unconstrained offer, in case the server cannot honour it).
    - ``no_context_takeover``: compress each message on its own (worse ratio, no memory kept between
      messages). ``peer_no_context_takeover``: ask the same of the peer.
    - ``level`` (0-9) and ``mem_level`` (1-9): zlib's compression level and memory level.
    - ``min_size``: messages shorter than this are sent uncompressed (compressing them rarely pays).

    The defaults (12-bit windows, memory level 5) keep a connection's zlib state near 38 KiB for
    the compressor and 11 KiB for the decompressor, created on first use only; zlib's own defaults
    (15 and 8) cost about 262 + 39 KiB for a few percent better ratio.
    """

    window_bits: int = attrs.field(default=12, validator=_check_bits)
    peer_window_bits: int = attrs.field(default=12, validator=_check_bits)
    no_context_takeover: bool = False
    peer_no_context_takeover: bool = False
    level: int = attrs.field(default=6, validator=[attrs.validators.ge(0), attrs.validators.le(9)])
    mem_level: int = attrs.field(default=5, validator=[attrs.validators.ge(1), attrs.validators.le(9)])
    min_size: int = attrs.field(default=32, validator=attrs.validators.ge(0))


class PerMessageDeflate(Extension):
    """The negotiated codec of one connection (``local_*``: what this end sends; ``remote_*``: what
    it receives). zlib objects are created on first use, so an idle connection holds none."""

    name = NAME

    def __init__(
        self,
        *,
        local_no_context_takeover: bool = False,
        remote_no_context_takeover: bool = False,
        local_max_window_bits: int = 15,
        remote_max_window_bits: int = 15,
        level: int = 6,
        mem_level: int = 5,
        min_size: int = 0,
    ) -> None:
        self.local_no_context_takeover = local_no_context_takeover
        self.remote_no_context_takeover = remote_no_context_takeover
        self.local_max_window_bits = local_max_window_bits
        self.remote_max_window_bits = remote_max_window_bits
        self.level = level
        self.mem_level = mem_level
        self.min_size = min_size
        self._encoder: zlib._Compress | None = None
        self._decoder: zlib._Decompress | None = None

    def __repr__(self) -> str:
        return f"PerMessageDeflate({self.response_params()!r})"

    def response_params(self) -> str:
        """This configuration as the server's ``Sec-WebSocket-Extensions`` value."""
        parts = [NAME]
        if self.local_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.remote_no_context_takeover:
            parts.append("client_no_context_takeover")
        if self.local_max_window_bits < 15:
            parts.append(f"server_max_window_bits={self.local_max_window_bits}")
        if self.remote_max_window_bits < 15:
            parts.append(f"client_max_window_bits={self.remote_max_window_bits}")
        return "; ".join(parts)

    def decode(self, data: bytes, *, final: bool, max_length: int | None) -> bytes:
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = zlib.decompressobj(-self.remote_max_window_bits)
        elif decoder.eof:  # the stream ended in an earlier piece of this message (see below)
            if data.strip(b"\x00"):
                raise ProtocolError(CloseCode.INVALID_FRAME_PAYLOAD_DATA, "data after the final block")
            if final:
                self._decoder = None
            return b""
        limit = 0 if max_length is None else max_length + 1  # one byte more tells "too big"
        try:
            out = decoder.decompress(data, limit)
            if final and not decoder.eof and (max_length is None or len(out) <= max_length):
                out += decoder.decompress(_EMPTY_BLOCK, 0 if max_length is None else limit - len(out))
        except zlib.error as exc:
            raise ProtocolError(
                CloseCode.INVALID_FRAME_PAYLOAD_DATA, f"invalid compressed data: {exc}"
            ) from None
        if max_length is not None and (len(out) > max_length or decoder.unconsumed_tail):
            raise ProtocolError(CloseCode.MESSAGE_TOO_BIG, "message too big after decompression")
        if decoder.eof:
            # The peer ended the DEFLATE stream (BFINAL): only empty octets may follow in this
            # message (RFC 7692 §7.2.3.4 sends one), in this piece or a later one, whatever the
            # chunking; the next message starts a new stream.
            if decoder.unused_data.strip(b"\x00"):
                raise ProtocolError(CloseCode.INVALID_FRAME_PAYLOAD_DATA, "data after the final block")
            if final:
                self._decoder = None
        elif final and self.remote_no_context_takeover:
            self._decoder = None
        return out

    def encode(self, data: bytes) -> tuple[bytes, bool]:
        if len(data) < self.min_size:
            return data, False
        encoder = self._encoder
        if encoder is None:
            # zlib refuses an 8-bit raw window; a 9-bit one never reaches back more than 250 bytes
            # (its window less MIN_LOOKAHEAD), so the peer's 256-byte window suffices (RFC 7692 §7.1.2.1).
            encoder = self._encoder = zlib.compressobj(
                self.level, zlib.DEFLATED, -max(self.local_max_window_bits, 9), self.mem_level
            )
        out = encoder.compress(data) + encoder.flush(zlib.Z_SYNC_FLUSH)
        if self.local_no_context_takeover:
            self._encoder = None
        return (out[:-4] if out.endswith(_EMPTY_BLOCK) else out), True


# ------------------------------------------------------------------ negotiation


def _params(params: Sequence[tuple[str, str | None]], *, response: bool) -> dict[str, int | None] | None:
    """The offer's or response's parameters, or ``None`` if one is unknown, repeated or invalid."""
    out: dict[str, int | None] = {}
    for name, value in params:
        if name in out:
            return None
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                return None
            out[name] = None
        elif name == "server_max_window_bits" or name == "client_max_window_bits":
            bits = _WINDOW_VALUES.get(value or "")
            if bits is None and not (value is None and name == "client_max_window_bits" and not response):
                return None  # only an offer's client_max_window_bits may come without a value
            out[name] = bits
        else:
            return None
    return out


def negotiate_deflate(offers: Sequence[ExtensionOffer], options: DeflateOptions) -> PerMessageDeflate | None:
    """The server's choice: the first permessage-deflate offer it can honour, or ``None``.

    A malformed offer (unknown, repeated or invalid parameter) is declined, not fatal (§5). The
    answer for the response header is :meth:`PerMessageDeflate.response_params`.
    """
    for name, raw in offers:
        if name != NAME:
            continue
        params = _params(raw, response=False)
        if params is None:
            continue
        server_bits = options.window_bits
        if "server_max_window_bits" in params:
            server_bits = min(server_bits, params["server_max_window_bits"] or 15)
        client_bits = 15  # we may only limit the client's window if it offered to be limited
        if "client_max_window_bits" in params:
            client_bits = min(options.peer_window_bits, params["client_max_window_bits"] or 15)
        return PerMessageDeflate(
            local_no_context_takeover=options.no_context_takeover or "server_no_context_takeover" in params,
            remote_no_context_takeover=options.peer_no_context_takeover,
            local_max_window_bits=server_bits,
            remote_max_window_bits=client_bits,
            level=options.level,
            mem_level=options.mem_level,
            min_size=options.min_size,
        )
    return None


def deflate_offer(options: DeflateOptions) -> str:
    """The client's ``Sec-WebSocket-Extensions`` offer for ``options``.

    When ``peer_window_bits`` asks the server for a smaller window, a plain offer follows as a
    fallback for servers that cannot honour ``server_max_window_bits``.
    """
    parts = [NAME]
    if options.peer_no_context_takeover:
        parts.append("server_no_context_takeover")
    if options.no_context_takeover:
        parts.append("client_no_context_takeover")
    client_bits = "client_max_window_bits"
    if options.window_bits < 15:
        client_bits += f"={options.window_bits}"
    if options.peer_window_bits < 15:
        preferred = [*parts, f"server_max_window_bits={options.peer_window_bits}", client_bits]
        return f"{'; '.join(preferred)}, {'; '.join([*parts, client_bits])}"
    return "; ".join([*parts, client_bits])


def accept_deflate(response: Sequence[ExtensionOffer], options: DeflateOptions) -> PerMessageDeflate | None:
    """The client's check of the server's answer to :func:`deflate_offer`; ``None`` if declined.

    Raises :class:`HandshakeError` (status 0) for an answer the offer did not allow (§7.1): repeated,
    unknown or invalid parameters (``client_max_window_bits`` must have a value in a response), no
    ``server_no_context_takeover`` when we asked for it, or permessage-deflate twice.
    """
    chosen = [raw for name, raw in response if name == NAME]
    if not chosen:
        return None
    if len(chosen) > 1:
        raise HandshakeError(0, "server accepted permessage-deflate twice")
    params = _params(chosen[0], response=True)
    if params is None:
        raise HandshakeError(0, f"invalid permessage-deflate response parameters: {chosen[0]}")
    server_bits = params.get("server_max_window_bits") or 15
    # A server may ignore the value we offered (RFC 7692 §7.1.2.2); we keep to ours anyway.
    client_bits = min(params.get("client_max_window_bits") or 15, options.window_bits)
    if options.peer_no_context_takeover and "server_no_context_takeover" not in params:
        # Every offer asked for it: the server had to accept it or decline permessage-deflate.
        raise HandshakeError(0, "server did not accept server_no_context_takeover")
    return PerMessageDeflate(
        local_no_context_takeover=options.no_context_takeover or "client_no_context_takeover" in params,
        remote_no_context_takeover="server_no_context_takeover" in params,
        local_max_window_bits=client_bits,
        remote_max_window_bits=server_bits,
        level=options.level,
        mem_level=options.mem_level,
        min_size=options.min_size,
    )
