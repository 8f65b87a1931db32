"""JWTAuth as other libraries' users write it (``secret=``, HS256), tokens without ``exp``, and
refusals that say why: to the client (401 and its body) and in the log (one INFO line)."""

from __future__ import annotations

import logging
import time
from typing import Any

import jwt
import pytest

from trio_ws import (
    AuthBackend,
    AuthenticationFailed,
    BearerToken,
    HandshakeRejected,
    IsAuthenticated,
    JWTAuth,
    Request,
    Router,
    WebSocket,
)
from trio_ws.testing import open_test_client

SECRET = "s3cret-key-of-at-least-32-bytes!!"


def token(claims: dict[str, Any], key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


async def whoami(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_json({"user": ws.user, "error": ws.request.auth_error if ws.request else None})


def protected(backend: AuthBackend) -> Router:
    router = Router(auth=[backend], guards=[IsAuthenticated()])
    router.add_route("/", whoami)
    return router


async def refused(router: Router, jwt_token: str) -> HandshakeRejected:
    with pytest.raises(HandshakeRejected) as info:
        async with open_test_client(router, headers={"Authorization": f"Bearer {jwt_token}"}):
            pass  # pragma: no cover
    return info.value


async def test_secret_is_the_hs256_key_as_other_libraries_write_it() -> None:
    router = protected(JWTAuth(secret=SECRET))
    good = token({"sub": "ann", "exp": int(time.time()) + 600})
    async with open_test_client(router, headers={"Authorization": f"Bearer {good}"}) as client:
        assert (await client.receive_json(timeout=5))["user"]["sub"] == "ann"
    assert JWTAuth(secret=SECRET).key == JWTAuth(SECRET).key == SECRET
    rejected = await refused(router, token({"sub": "ann"}, key="another-secret-of-at-least-32-bytes"))
    assert (rejected.status, rejected.body) == (401, b"Authentication required: bad signature")


def test_key_and_secret_are_one_setting() -> None:
    with pytest.raises(TypeError, match="not both"):
        JWTAuth(SECRET, secret=SECRET)
    with pytest.raises(TypeError, match="needs the key"):
        JWTAuth()
    with pytest.raises(ValueError, match="HMAC"):
        JWTAuth(secret=SECRET, algorithms=["RS256"])
    with pytest.raises(TypeError, match="not a string"):
        JWTAuth(SECRET, require="exp")


async def test_a_token_without_exp_is_accepted_unless_exp_is_required() -> None:
    forever = token({"sub": "ann"})
    async with open_test_client(
        protected(JWTAuth(SECRET)), headers={"Authorization": f"Bearer {forever}"}
    ) as client:
        assert (await client.receive_json(timeout=5))["user"] == {"sub": "ann"}
    strict = protected(JWTAuth(SECRET, require=["exp"]))
    rejected = await refused(strict, forever)
    assert rejected.status == 401
    assert rejected.body == b'Authentication required: missing claim "exp"'
    expiring = token({"sub": "ann", "exp": int(time.time()) + 600})
    async with open_test_client(strict, headers={"Authorization": f"Bearer {expiring}"}) as client:
        assert (await client.receive_json(timeout=5))["user"]["sub"] == "ann"


async def test_a_refusal_says_why_to_the_client_and_in_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_ws")
    router = protected(JWTAuth(secret=SECRET, audience="chat"))
    now = int(time.time())
    cases = [
        (token({"sub": "ann", "aud": "chat", "exp": now - 10}), "token expired"),
        (token({"sub": "ann", "aud": "chat", "nbf": now + 600}), "token not yet valid"),
        (token({"sub": "ann", "aud": "other"}), "wrong audience"),
        (token({"sub": "ann", "aud": "chat"}, key="another-secret-of-at-least-32-bytes"), "bad signature"),
        (token({"sub": "ann", "aud": "chat"}, key=SECRET * 2, algorithm="HS512"), "algorithm not allowed"),
        ("not.a.token", "malformed token"),
    ]
    for jwt_token, reason in cases:
        caplog.clear()
        rejected = await refused(router, jwt_token)
        assert rejected.status == 401
        assert rejected.body == f"Authentication required: {reason}".encode()
        assert rejected.headers is not None and rejected.headers["www-authenticate"] == "Bearer"
        lines = [r for r in caplog.records if "authentication failed" in r.getMessage()]
        assert len(lines) == 1, caplog.text
        assert lines[0].levelno == logging.INFO
        assert lines[0].getMessage().endswith(f"(JWTAuth): {reason}")
        assert lines[0].exc_info is None and "Traceback" not in caplog.text
    # Without a token at all, the refusal is as before.
    with pytest.raises(HandshakeRejected) as info:
        async with open_test_client(router):
            pass  # pragma: no cover
    assert (info.value.status, info.value.body) == (401, b"Authentication required")


async def test_without_a_guard_a_bad_token_is_anonymous_with_the_reason_at_hand() -> None:
    router = Router(auth=[JWTAuth(secret=SECRET)])
    router.add_route("/", whoami)
    expired = token({"sub": "ann", "exp": int(time.time()) - 10})
    async with open_test_client(router, headers={"Authorization": f"Bearer {expired}"}) as client:
        assert await client.receive_json(timeout=5) == {"user": None, "error": "token expired"}


async def test_any_backend_may_say_why_and_the_next_backend_still_runs() -> None:
    def verify(value: str) -> str | None:
        if value == "revoked":
            raise AuthenticationFailed("token revoked")
        return None

    class Cookie:
        async def authenticate(self, request: Request) -> Any | None:
            return request.cookies.get("session")

    router = protected(BearerToken(verify))
    rejected = await refused(router, "revoked")
    assert (rejected.status, rejected.body) == (401, b"Authentication required: token revoked")
    both = Router(auth=[BearerToken(verify), Cookie()], guards=[IsAuthenticated()])
    both.add_route("/", whoami)
    headers = {"Authorization": "Bearer revoked", "Cookie": "session=ann"}
    async with open_test_client(both, headers=headers) as client:
        assert await client.receive_json(timeout=5) == {"user": "ann", "error": None}
