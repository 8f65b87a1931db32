"""Authentication backends and guards, run during the handshake, before the handler.

A backend is any object with ``async def authenticate(request) -> principal | None``; the first that
returns a principal wins, and it becomes ``ws.user`` (the backend is ``ws.auth``). A guard is a
callable ``(request, principal) -> bool`` (sync or async); when one says no, the handshake is refused:
401 when nobody was authenticated, 403 otherwise.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import inspect
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, Protocol, runtime_checkable

from ..connection import Request

__all__ = [
    "APIKey",
    "AuthBackend",
    "BearerToken",
    "Guard",
    "HTTPBasic",
    "HasPermission",
    "IsAdminUser",
    "IsAuthenticated",
    "JWTAuth",
]

Verify = Callable[..., Any]  # sync or async, returning a principal or None


async def _call(function: Callable[..., Any], *args: Any) -> Any:
    result = function(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


@runtime_checkable
class AuthBackend(Protocol):
    """What an authentication backend is: ``authenticate`` returns the principal, or ``None``."""

    async def authenticate(self, request: Request) -> Any | None:
        """The principal the request authenticates as, or ``None`` (no or bad credentials)."""
        ...


def _bearer(request: Request, query_param: str | None) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if query_param is not None:
        return request.query_params.get(query_param) or None
    return None


class BearerToken:
    """``Authorization: Bearer <token>``, checked by ``verify(token) -> principal | None`` (sync or
    async). Browsers cannot set headers on a WebSocket: ``query_param="token"`` also reads
    ``?token=...``."""

    challenge = "Bearer"

    def __init__(self, verify: Verify, *, query_param: str | None = None) -> None:
        self.verify = verify
        self.query_param = query_param

    async def authenticate(self, request: Request) -> Any | None:
        """What ``verify`` says of the bearer token, or ``None`` without one."""
        token = _bearer(request, self.query_param)
        return None if token is None else await _call(self.verify, token)


class APIKey:
    """An API key from a header (``X-API-Key``) or a query parameter. Give either ``keys`` (key ->
    principal; compared in constant time) or ``verify(key) -> principal | None``."""

    def __init__(
        self,
        keys: dict[str, Any] | None = None,
        *,
        verify: Verify | None = None,
        header: str | None = "X-API-Key",
        query_param: str | None = None,
    ) -> None:
        if (keys is None) == (verify is None):
            raise ValueError("APIKey needs keys= or verify=, not both")
        if header is None and query_param is None:
            raise ValueError("APIKey needs a header or a query_param to read the key from")
        self.keys = keys
        self.verify = verify
        self.header = header
        self.query_param = query_param

    async def authenticate(self, request: Request) -> Any | None:
        """The principal of the key in the header (or query parameter), or ``None``."""
        key = request.headers.get(self.header) if self.header else None
        if not key and self.query_param:
            key = request.query_params.get(self.query_param)
        if not key:
            return None
        if self.verify is not None:
            return await _call(self.verify, key)
        assert self.keys is not None
        found = None
        for candidate, principal in self.keys.items():  # every key compared: no early exit
            if hmac.compare_digest(candidate.encode(), key.encode()):
                found = principal
        return found


class HTTPBasic:
    """``Authorization: Basic``, checked by ``verify(username, password) -> principal | None``."""

    challenge = 'Basic realm="websocket"'

    def __init__(self, verify: Verify) -> None:
        self.verify = verify

    async def authenticate(self, request: Request) -> Any | None:
        """What ``verify`` says of the Basic credentials, or ``None`` without (valid) ones."""
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        username, colon, password = decoded.partition(":")
        if not colon:
            return None
        return await _call(self.verify, username, password)


class JWTAuth:
    """A JSON Web Token as a bearer token (or ``?token=``), verified with PyJWT (the ``jwt`` extra:
    ``pip install 'trio-ws[jwt]'``). ``key`` is the HS256 secret or the RS256 public key; the claims
    are the principal. Expiry (``exp``) is always checked; ``audience`` and ``issuer`` when given."""

    challenge = "Bearer"

    def __init__(
        self,
        key: str | bytes,
        *,
        algorithms: Sequence[str] = ("HS256",),
        audience: str | None = None,
        issuer: str | None = None,
        query_param: str | None = None,
        leeway: float = 0.0,
    ) -> None:
        try:
            import jwt
        except ImportError:  # pragma: no cover - the test extra installs it
            raise ImportError("JWTAuth needs PyJWT: pip install 'trio-ws[jwt]'") from None
        self._jwt = jwt
        self.key = key
        self.algorithms = list(algorithms)
        self.audience = audience
        self.issuer = issuer
        self.query_param = query_param
        self.leeway = leeway

    async def authenticate(self, request: Request) -> Any | None:
        """The token's claims if it verifies (signature, expiry, audience, issuer), else ``None``."""
        token = _bearer(request, self.query_param)
        if token is None:
            return None
        try:
            claims: dict[str, Any] = self._jwt.decode(
                token,
                self.key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp"]},
            )
        except self._jwt.PyJWTError:
            return None
        return claims


# ------------------------------------------------------------------ guards

Guard = Callable[[Request, Any], bool | Awaitable[bool]]
"""``guard(request, principal) -> bool``, sync or async."""


def _field(principal: Any, name: str) -> Any:
    if isinstance(principal, dict):
        return principal.get(name)
    return getattr(principal, name, None)


class IsAuthenticated:
    """Someone was authenticated."""

    def __call__(self, request: Request, principal: Any) -> bool:
        return principal is not None


class IsAdminUser:
    """The principal is an administrator: ``is_admin``, ``is_staff`` or ``is_superuser`` true (an
    attribute or a dict key), or ``"admin"`` among its ``roles``."""

    def __call__(self, request: Request, principal: Any) -> bool:
        if principal is None:
            return False
        if any(_field(principal, name) is True for name in ("is_admin", "is_staff", "is_superuser")):
            return True
        roles = _field(principal, "roles")
        return isinstance(roles, Collection) and not isinstance(roles, str) and "admin" in roles


class HasPermission:
    """The principal has ``permission`` in its ``permissions`` (or ``scopes``; a JWT's space-separated
    ``scope`` claim counts too)."""

    def __init__(self, permission: str) -> None:
        self.permission = permission

    def __call__(self, request: Request, principal: Any) -> bool:
        if principal is None:
            return False
        for name in ("permissions", "scopes", "scope"):
            value = _field(principal, name)
            if isinstance(value, str):
                value = value.split()
            if isinstance(value, Collection) and self.permission in value:
                return True
        return False

    def __repr__(self) -> str:
        return f"HasPermission({self.permission!r})"


async def authenticate(backends: Sequence[AuthBackend], request: Request) -> tuple[Any, AuthBackend | None]:
    """The first backend's principal (and the backend), or ``(None, None)``."""
    for backend in backends:
        principal = await backend.authenticate(request)
        if principal is not None:
            return principal, backend
    return None, None


async def check_guards(guards: Sequence[Guard], request: Request, principal: Any) -> Guard | None:
    """The first guard that says no, or ``None``."""
    for guard in guards:
        if not await _call(guard, request, principal):
            return guard
    return None
