"""Authentication backends and guards, run during the handshake, before the handler.

A backend is any object with ``async def authenticate(request) -> principal | None``; the first that
returns a principal wins, and it becomes ``ws.user`` (the backend is ``ws.auth``). A backend that
finds credentials that do not verify may raise :class:`AuthenticationFailed` to say why (logged, and
told to the client if the handshake is refused). A guard is a callable ``(request, principal) ->
bool`` (sync or async); when one says no, the handshake is refused: 401 when nobody was
authenticated, 403 otherwise.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import inspect
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, Protocol, runtime_checkable

from ..connection import Request

__all__ = [
    "APIKey",
    "AuthBackend",
    "AuthenticationFailed",
    "BearerToken",
    "Guard",
    "HTTPBasic",
    "HasPermission",
    "IsAdminUser",
    "IsAuthenticated",
    "JWTAuth",
]

logger = logging.getLogger("trio_ws")

Verify = Callable[..., Any]  # sync or async, returning a principal or None


class AuthenticationFailed(Exception):
    """Raised by an authentication backend's ``authenticate`` when credentials were given but do
    not verify, with the ``reason`` (``"token expired"``). The other backends are still tried; if
    none authenticates, the reason is logged (INFO, on ``trio_ws``), kept as
    ``request.auth_error``, and, when a guard then refuses the handshake, sent in the 401's body:
    ``Authentication required: token expired``. Returning ``None`` instead says nothing of why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        #: Why the credentials were refused: short, for the client and the log.
        self.reason = reason


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
    ``pip install 'trio-ws[jwt]'``); the claims are the principal.

    ``key`` is the HS256 secret or the RS256 public key; ``secret=`` is the same parameter under the
    name other libraries use, for an HMAC key (HS256, HS384, HS512): give one of them. Only
    ``algorithms`` are accepted. ``exp`` (expiry) and ``nbf`` are checked when the token has them,
    with ``leeway`` seconds; ``audience`` and ``issuer`` when given. ``require`` lists claims a token
    must have (``require=["exp"]`` refuses tokens that never expire).

    A token that does not verify raises :class:`AuthenticationFailed` with the reason: ``token
    expired``, ``token not yet valid``, ``bad signature``, ``missing claim "exp"``, ``wrong
    audience``, ``wrong issuer``, ``algorithm not allowed``, ``malformed token``.
    """

    challenge = "Bearer"

    def __init__(
        self,
        key: str | bytes | None = None,
        *,
        secret: str | bytes | None = None,
        algorithms: Sequence[str] = ("HS256",),
        audience: str | None = None,
        issuer: str | None = None,
        query_param: str | None = None,
        leeway: float = 0.0,
        require: Sequence[str] = (),
    ) -> None:
        if key is not None and secret is not None:
            raise TypeError("JWTAuth takes key= or secret= (the same setting), not both")
        if key is None and secret is None:
            raise TypeError("JWTAuth needs the key: JWTAuth(key) or JWTAuth(secret=...)")
        if isinstance(algorithms, str) or isinstance(require, str):
            raise TypeError("algorithms and require are lists of names, not a string")
        if secret is not None and any(not a.upper().startswith("HS") for a in algorithms):
            raise ValueError(
                f"secret= is an HMAC key (HS256, HS384, HS512); for {list(algorithms)} give key="
            )
        try:
            import jwt
        except ImportError:  # pragma: no cover - the test extra installs it
            raise ImportError("JWTAuth needs PyJWT: pip install 'trio-ws[jwt]'") from None
        self._jwt = jwt
        chosen = secret if key is None else key
        assert chosen is not None
        self.key: str | bytes = chosen
        self.algorithms = list(algorithms)
        self.audience = audience
        self.issuer = issuer
        self.query_param = query_param
        self.leeway = leeway
        self.require = list(require)

    def _reason(self, exc: Exception) -> str:
        errors = self._jwt.exceptions
        if isinstance(exc, errors.ExpiredSignatureError):
            return "token expired"
        if isinstance(exc, errors.ImmatureSignatureError):
            return "token not yet valid"
        if isinstance(exc, errors.MissingRequiredClaimError):
            return f'missing claim "{getattr(exc, "claim", "?")}"'
        if isinstance(exc, errors.InvalidSignatureError):
            return "bad signature"
        if isinstance(exc, errors.InvalidAudienceError):
            return "wrong audience"
        if isinstance(exc, errors.InvalidIssuerError):
            return "wrong issuer"
        if isinstance(exc, errors.InvalidAlgorithmError):
            return "algorithm not allowed"
        if isinstance(exc, errors.DecodeError):
            return "malformed token"
        return "invalid token"

    async def authenticate(self, request: Request) -> Any | None:
        """The token's claims if it verifies (signature, expiry, audience, issuer, required
        claims); ``None`` without a token. Raises :class:`AuthenticationFailed` saying why a token
        does not verify."""
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
                options={"require": self.require},
            )
        except self._jwt.PyJWTError as exc:
            raise AuthenticationFailed(self._reason(exc)) from None
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
    """The first backend's principal (and the backend), or ``(None, None)``; then the first
    :class:`AuthenticationFailed` reason is logged and kept as ``request.auth_error``."""
    failed: tuple[AuthenticationFailed, AuthBackend] | None = None
    for backend in backends:
        try:
            principal = await backend.authenticate(request)
        except AuthenticationFailed as exc:
            failed = failed or (exc, backend)
            continue
        if principal is not None:
            return principal, backend
    if failed is not None:
        error, backend = failed
        request.auth_error = error.reason
        where = request.client[0] if request.client else "-"
        name = type(backend).__name__
        logger.info("authentication failed for %s from %s (%s): %s", request.path, where, name, error.reason)
    return None, None


async def check_guards(guards: Sequence[Guard], request: Request, principal: Any) -> Guard | None:
    """The first guard that says no, or ``None``."""
    for guard in guards:
        if not await _call(guard, request, principal):
            return guard
    return None
