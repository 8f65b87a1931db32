"""Routing: a :class:`Router` maps request paths to handlers, with typed path parameters.

A router is itself a handler (``await router(ws)``), so it goes wherever a handler does. Routes are
matched in the order they were added, mounted routers' routes in place; all of them are compiled
into one regular expression, so matching costs about the same for 1 route or 1,000.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import re
import typing
import uuid
from collections.abc import Callable, Sequence
from typing import Any, final

import attrs

from ..connection import WebSocket, WebSocketOptions
from ..server import Handler
from ._auth import AuthBackend, Guard
from ._security import RATE_LIMIT_MARK, ROUTED_MARK, RateLimit, SecurityPolicy

__all__ = ["Route", "Router"]

_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_]+))?}")


def _to_int(value: str) -> int:
    if not re.fullmatch(r"-?[0-9]+", value):
        raise ValueError(value)
    return int(value)


def _to_float(value: str) -> float:
    if not re.fullmatch(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?", value):
        raise ValueError(value)
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(value)
    return result


def _to_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ValueError(value)


def _to_uuid(value: str) -> uuid.UUID:
    if not re.fullmatch(
        r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}", value
    ):
        raise ValueError(value)
    return uuid.UUID(value)


def _to_str(value: str) -> str:
    return value


#: Converter name -> (regex of one value, function); a function's ValueError means "no match".
CONVERTERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "str": ("[^/]+", _to_str),
    "int": ("[^/]+", _to_int),
    "float": ("[^/]+", _to_float),
    "bool": ("[^/]+", _to_bool),
    "uuid": ("[^/]+", _to_uuid),
    "path": (".*", _to_str),
}
_BY_TYPE: dict[Any, str] = {str: "str", int: "int", float: "float", bool: "bool", uuid.UUID: "uuid"}
_BY_NAME: dict[str, str] = {
    "str": "str",
    "int": "int",
    "float": "float",
    "bool": "bool",
    "uuid.UUID": "uuid",
    "UUID": "uuid",
}


def _annotations(handler: Callable[..., Any]) -> tuple[dict[str, Any], bool]:
    """The handler's parameter annotations (resolved when possible), and whether it takes ``**kwargs``."""
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):
        return {}, True
    try:
        hints = typing.get_type_hints(handler)
    except Exception:  # unresolvable forward references: fall back to the annotations as written
        hints = {}
    out: dict[str, Any] = {}
    var_keyword = False
    for name, param in signature.parameters.items():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            var_keyword = True
        elif param.annotation is not inspect.Parameter.empty:
            out[name] = hints.get(name, param.annotation)
    return out, var_keyword


def _converter_for(annotation: Any) -> str:
    if isinstance(annotation, str):
        return _BY_NAME.get(annotation, "str")
    return _BY_TYPE.get(annotation, "str")


@final
@attrs.frozen
class Route:
    """One route: the full ``path`` pattern, its ``handler``, and what applies to it."""

    path: str
    handler: Handler
    name: str
    #: :class:`~trio_ws.WebSocketOptions` fields that differ from the server's for this route.
    options: dict[str, Any] = attrs.field(factory=dict, eq=False)
    #: Subprotocols this route speaks (``None``: the server's list).
    subprotocols: tuple[str, ...] | None = None
    #: Parameter name -> converter name.
    converters: dict[str, str] = attrs.field(factory=dict, eq=False)
    #: Origin checks, rate limit, authentication and guards for this route (its routers' included).
    security: SecurityPolicy | None = None

    def regex(self, group_prefix: str) -> str:
        """This route's pattern as a regex body, its groups named ``<group_prefix><name>``."""
        out, pos = [], 0
        for m in _PARAM.finditer(self.path):
            out.append(re.escape(self.path[pos : m.start()]))
            out.append(f"(?P<{group_prefix}{m[1]}>{CONVERTERS[self.converters[m[1]]][0]})")
            pos = m.end()
        out.append(re.escape(self.path[pos:]))
        return "".join(out)

    def convert(self, raw: dict[str, str]) -> dict[str, Any] | None:
        """The converted parameters, or ``None`` when one does not convert (the route does not match)."""
        try:
            return {name: CONVERTERS[self.converters[name]][1](value) for name, value in raw.items()}
        except ValueError:
            return None


def _validate_options(options: dict[str, Any]) -> None:
    attrs.evolve(WebSocketOptions(), **options)  # unknown names raise TypeError here, not per request


class _Table:
    """The compiled routes of a router: one regex for all, and one per route for the rare case where
    the first match's values do not convert."""

    def __init__(self, version: int, routes: list[Route]) -> None:
        self.version = version
        self.routes = routes
        # One alternative per route; the empty group ``r<i>`` at its end tells which one matched.
        body = "|".join(f"{route.regex(f'p{i}_')}(?P<r{i}>)" for i, route in enumerate(routes))
        self.pattern = re.compile(f"(?:{body})\\Z" if routes else "(?!)")
        self.groups = [
            [(f"p{i}_{name}", name) for name in route.converters] for i, route in enumerate(routes)
        ]
        self.singles = [re.compile(route.regex("") + "\\Z") for route in routes]


@final
class Router:
    """Routes connections by path to handlers; itself a handler.

    ``@router.websocket("/chat/{room}")`` registers a handler; path parameters are converted by the
    handler's annotations (``str``, ``int``, ``float``, ``bool`` from "true"/"false"/"1"/"0",
    ``uuid.UUID``) or by an explicit converter in the pattern (``{id:int}``, ``{rest:path}`` for the
    rest of the path, slashes included). A value that does not convert means the route does not
    match. An unmatched path is refused during the handshake with ``unmatched_status`` (403, the
    ASGI convention; 404 if you prefer). ``options`` (:class:`~trio_ws.WebSocketOptions` fields),
    ``subprotocols`` and security (``origins``, ``require_origin``, ``rate_limit``, ``auth``,
    ``guards``) apply to every route of this router unless a route says otherwise.
    """

    def __init__(
        self,
        *,
        unmatched_status: int = 403,
        subprotocols: Sequence[str] | None = None,
        origins: Sequence[str] | None = None,
        require_origin: bool | None = None,
        rate_limit: RateLimit | None = None,
        auth: Sequence[AuthBackend] | None = None,
        guards: Sequence[Guard] | None = None,
        **options: Any,
    ) -> None:
        if not 400 <= unmatched_status <= 599:
            raise ValueError(f"unmatched_status must be 4xx or 5xx, not {unmatched_status}")
        _validate_options(options)
        self.unmatched_status = unmatched_status
        self.subprotocols = None if subprotocols is None else tuple(subprotocols)
        self.options = options
        self.security = SecurityPolicy.build(origins, require_origin, rate_limit, auth, guards)
        # Routes and mounts in the order added: Route, or (prefix, Router).
        self._entries: list[Route | tuple[str, Router]] = []
        self._mounted: list[Router] = []
        self._version = 0
        self._compiled: _Table | None = None

    # ------------------------------------------------------------ building

    def websocket(
        self,
        path: str,
        *,
        name: str | None = None,
        subprotocols: Sequence[str] | None = None,
        **settings: Any,
    ) -> Callable[[Handler], Handler]:
        """Decorator: route ``path`` to the decorated handler (see :meth:`add_route`)."""

        def register(handler: Handler) -> Handler:
            self.add_route(path, handler, name=name, subprotocols=subprotocols, **settings)
            return handler

        return register

    def add_route(
        self,
        path: str,
        handler: Handler,
        *,
        name: str | None = None,
        subprotocols: Sequence[str] | None = None,
        origins: Sequence[str] | None = None,
        require_origin: bool | None = None,
        rate_limit: RateLimit | None = None,
        auth: Sequence[AuthBackend] | None = None,
        guards: Sequence[Guard] | None = None,
        **options: Any,
    ) -> Route:
        """Route ``path`` to ``handler(ws, **path_params)``, with route-level ``subprotocols``,
        security (``origins``, ``require_origin``, ``rate_limit``, ``auth``, ``guards``: see
        ``docs/security.md``; a handler decorated with :func:`~trio_ws.rate_limit` brings its own)
        and :class:`~trio_ws.WebSocketOptions` fields. Raises ``ValueError`` for a malformed pattern,
        an unknown converter, a parameter the handler cannot take, or two rate limits."""
        if not path.startswith("/"):
            raise ValueError(f"a route path starts with '/': {path!r}")
        _validate_options(options)
        decorated = getattr(handler, RATE_LIMIT_MARK, None)
        if decorated is not None:
            if rate_limit is not None:
                raise ValueError(
                    f"{path!r}: the handler has a @rate_limit and the route rate_limit=; give one"
                )
            rate_limit = decorated
        security = SecurityPolicy.build(origins, require_origin, rate_limit, auth, guards)
        annotations, var_keyword = _annotations(handler)
        converters: dict[str, str] = {}
        for m in _PARAM.finditer(path):
            param, converter = m[1], m[2]
            if param in converters:
                raise ValueError(f"parameter {param!r} twice in {path!r}")
            if converter is not None and converter not in CONVERTERS:
                raise ValueError(f"unknown converter {converter!r} in {path!r}; known: {sorted(CONVERTERS)}")
            if not var_keyword and param not in inspect.signature(handler).parameters:
                raise ValueError(f"{handler!r} has no parameter {param!r} for the route {path!r}")
            converters[param] = converter or _converter_for(annotations.get(param))
        if "{" in _PARAM.sub("", path) or "}" in _PARAM.sub("", path):
            raise ValueError(f"malformed parameter in {path!r}")
        route = Route(
            path,
            handler,
            name or str(getattr(handler, "__name__", path)),
            options,
            None if subprotocols is None else tuple(subprotocols),
            converters,
            security,
        )
        with contextlib.suppress(AttributeError, TypeError):  # (a bound method cannot be marked)
            setattr(handler, ROUTED_MARK, True)
        self._entries.append(route)
        self._version += 1
        return route

    def mount(self, prefix: str, router: Router) -> None:
        """Serve ``router``'s routes under ``prefix`` (``"/api"``: its ``"/items"`` is ``"/api/items"``).
        Its own options and subprotocols apply to its routes, over this router's."""
        if not prefix.startswith("/") or prefix.endswith("/") or _PARAM.search(prefix):
            raise ValueError(f"a mount prefix starts with '/', has no trailing '/' or parameters: {prefix!r}")
        if router is self:
            raise ValueError("a router cannot be mounted in itself")
        self._entries.append((prefix, router))
        self._mounted.append(router)
        self._version += 1

    # ------------------------------------------------------------ matching

    @property
    def routes(self) -> list[Route]:
        """Every route with its full path, mounted routers' included, in matching order."""
        return self._flatten("", {}, None, None)

    def _flatten(
        self,
        prefix: str,
        options: dict[str, Any],
        subprotocols: tuple[str, ...] | None,
        security: SecurityPolicy | None,
    ) -> list[Route]:
        options = {**options, **self.options}
        subprotocols = self.subprotocols if self.subprotocols is not None else subprotocols
        security = security if self.security is None else self.security.over(security)
        out: list[Route] = []
        for entry in self._entries:
            if isinstance(entry, Route):
                out.append(
                    attrs.evolve(
                        entry,
                        path=prefix + entry.path,
                        options={**options, **entry.options},
                        subprotocols=entry.subprotocols if entry.subprotocols is not None else subprotocols,
                        security=security if entry.security is None else entry.security.over(security),
                    )
                )
            else:
                sub_prefix, router = entry
                out.extend(router._flatten(prefix + sub_prefix, options, subprotocols, security))
        return out

    def _total_version(self) -> int:
        return self._version + sum(router._total_version() for router in self._mounted)

    def _table(self) -> _Table:
        version = self._total_version()
        table = self._compiled
        if table is None or table.version != version:
            table = self._compiled = _Table(version, self.routes)
        return table

    def match(self, path: str) -> tuple[Route, dict[str, Any]] | None:
        """The first route matching the (percent-decoded) ``path`` and its converted parameters."""
        table = self._table()
        m = table.pattern.match(path)
        if m is None:
            return None
        first = int(m.lastgroup[1:]) if m.lastgroup else 0
        route = table.routes[first]
        params = route.convert({name: m.group(group) for group, name in table.groups[first]})
        if params is not None:
            return route, params
        for index in range(first + 1, len(table.routes)):  # it did not convert: try the later routes
            single = table.singles[index].match(path)
            if single is not None:
                route = table.routes[index]
                params = route.convert(single.groupdict())
                if params is not None:
                    return route, params
        return None

    # ------------------------------------------------------------ handling

    async def __call__(self, ws: WebSocket) -> None:
        """Handle ``ws``: match its path (``request.route_path``: what follows an ASGI mount point),
        apply the route's options, call the route's handler."""
        request = ws.request
        found = None if request is None else self.match(request.route_path)
        if found is None:
            await ws.reject(self.unmatched_status)
            return
        route, params = found
        if route.security is not None:
            assert request is not None
            refusal, ws.user, ws.auth = await route.security.check(request, ws.user, ws.auth)
            if refusal is not None:
                await ws.reject(refusal.status, refusal.body, refusal.headers)
                return
        ws.configure(path_params=params, options=route.options, subprotocols=route.subprotocols)
        await route.handler(ws, **params)

    def __repr__(self) -> str:
        return f"<Router {len(self.routes)} routes>"
