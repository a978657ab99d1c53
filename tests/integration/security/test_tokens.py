"""Token attacks: every way in without a valid token is 401 with the envelope and a challenge."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable

import httpx
import pytest
from jose import jwt

from tests.fixtures.app import TEST_SECRET, MakeSettings, running_app
from tests.fixtures.jwks import JwksServer, Keys, b64url, claims, hs256, random_kid
from tests.integration.security.conftest import (
    PROTECTED,
    assert_unauthenticated,
    bearer,
    jwks_settings,
)
from upload_service.dependencies import CurrentUser
from upload_service.main import create_app

Headers = Callable[[Keys], dict[str, str]]


def unsigned(header: dict[str, object], payload: dict[str, object], signature: str = "") -> str:
    """A token assembled by hand, signed with whatever the caller says."""
    encoded = [b64url(json.dumps(part).encode()) for part in (header, payload)]
    return ".".join([*encoded, signature])


def hmac_signed(secret: bytes, payload: dict[str, object]) -> str:
    """An HS256 token whose HMAC key is `secret` bytes (for key-confusion attempts)."""
    signing_input = unsigned({"alg": "HS256", "typ": "JWT"}, payload)[:-1]
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def tampered(token: str) -> str:
    """`token` with its payload replaced by user-b's, the signature kept."""
    head, _, signature = token.split(".")
    return f"{head}.{b64url(json.dumps(claims(sub='user-b')).encode())}.{signature}"


# (name, the request's headers, a phrase of the 401's message naming the intended reason)
ATTACKS: list[tuple[str, Headers, str]] = [
    ("not-bearer", lambda k: {"Authorization": "Basic dXNlcjpwYXNz"}, "Authentication required"),
    ("bearer-without-token", lambda k: {"Authorization": "Bearer "}, "Malformed token"),
    ("garbage", lambda k: bearer("garbage"), "Malformed token"),
    ("garbage-three-segments", lambda k: bearer("a.b.c"), "Malformed token"),
    (
        "alg-none",
        lambda k: bearer(unsigned({"alg": "none", "typ": "JWT"}, claims())),
        "algorithm not allowed",
    ),
    (
        "alg-None-mixed-case",
        lambda k: bearer(unsigned({"alg": "None"}, claims())),
        "algorithm not allowed",
    ),
    (
        "alg-outside-allow-list",
        lambda k: bearer(str(jwt.encode(claims(), TEST_SECRET, algorithm="HS512"))),
        "algorithm not allowed",
    ),
    ("hs256-wrong-secret", lambda k: bearer(hs256(claims(), secret="wrong-" * 8)), "Invalid token"),
    (
        "key-confusion-rsa-pem",
        lambda k: bearer(hmac_signed(k.rsa.public_pem, claims())),
        "Invalid token",
    ),
    (
        "key-confusion-rsa-der",
        lambda k: bearer(hmac_signed(k.rsa.public_der, claims())),
        "Invalid token",
    ),
    (
        "key-confusion-ec-pem",
        lambda k: bearer(hmac_signed(k.ec.public_pem, claims())),
        "Invalid token",
    ),
    (
        "expired",
        lambda k: bearer(k.rsa.sign(claims(exp=int(time.time()) - 3600))),
        "Token has expired",
    ),
    ("no-exp", lambda k: bearer(k.rsa.sign(claims(exp=None))), '"exp"'),
    (
        "nbf-in-the-future",
        lambda k: bearer(k.rsa.sign(claims(nbf=int(time.time()) + 3600))),
        "not yet valid (nbf)",
    ),
    ("wrong-aud", lambda k: bearer(k.rsa.sign(claims(aud="another-service"))), "audience"),
    ("no-aud", lambda k: bearer(k.rsa.sign(claims(aud=None))), '"aud"'),
    ("wrong-iss", lambda k: bearer(k.ec.sign(claims(iss="https://evil.test"))), "issuer"),
    ("no-iss", lambda k: bearer(k.ec.sign(claims(iss=None))), '"iss"'),
    ("missing-sub", lambda k: bearer(k.rsa.sign(claims(sub=None))), '"sub"'),
    ("empty-sub", lambda k: bearer(hs256(claims(sub=""))), "no subject"),
    ("16kb-token", lambda k: bearer(hs256(claims(pad="x" * 16 * 1024))), "Malformed token"),
    ("unknown-kid", lambda k: bearer(k.rsa_next.sign(claims())), "Unknown signing key"),
    (
        "kid-path-traversal",
        lambda k: bearer(k.rsa.sign(claims(), kid="../../../etc/passwd")),
        "Malformed key id",
    ),
    ("kid-not-a-string", lambda k: bearer(k.rsa.sign(claims(), kid=42)), "Malformed key id"),
    (
        "forged-rsa-signature-known-kid",
        lambda k: bearer(k.attacker_rsa.sign(claims())),
        "Invalid token",
    ),
    (
        "forged-ec-signature-known-kid",
        lambda k: bearer(k.attacker_ec.sign(claims())),
        "Invalid token",
    ),
    (
        "rs256-naming-an-ec-key",
        lambda k: bearer(k.attacker_rsa.sign(claims(), kid="ec-1")),
        "Unknown signing key",
    ),
    ("tampered-payload", lambda k: bearer(tampered(k.rsa.sign(claims()))), "Invalid token"),
    (
        "embedded-jwk-header",
        lambda k: bearer(
            k.attacker_rsa.sign(claims(), kid="mine", jwk=k.attacker_rsa.jwk | {"kid": "mine"})
        ),
        "Unknown signing key",
    ),
    (
        "jku-header-to-attacker",
        lambda k: bearer(
            k.attacker_rsa.sign(claims(), kid=random_kid(), jku="http://127.0.0.1:9/")
        ),
        "Unknown signing key",
    ),
]


async def test_no_token_is_401_with_a_bare_challenge(secured: httpx.AsyncClient) -> None:
    assert_unauthenticated(await secured.get(PROTECTED), token_sent=False)


@pytest.mark.parametrize(("name", "headers", "reason"), ATTACKS, ids=[a[0] for a in ATTACKS])
async def test_attack_is_401(
    secured: httpx.AsyncClient, keys: Keys, name: str, headers: Headers, reason: str
) -> None:
    response = await secured.get(PROTECTED, headers=headers(keys))
    assert_unauthenticated(response, token_sent=True)
    assert reason in response.json()["message"]


@pytest.mark.parametrize("signer", ["rsa", "ec"])
async def test_jwks_signed_tokens_are_accepted(
    secured: httpx.AsyncClient, keys: Keys, signer: str
) -> None:
    key = keys.rsa if signer == "rsa" else keys.ec
    response = await secured.get(PROTECTED, headers=bearer(key.sign(claims())))
    assert response.status_code == 200, response.text


async def test_hs256_with_the_secret_is_accepted(secured: httpx.AsyncClient) -> None:
    response = await secured.get(PROTECTED, headers=bearer(hs256(claims())))
    assert response.status_code == 200, response.text


async def test_small_clock_skew_is_tolerated(secured: httpx.AsyncClient, keys: Keys) -> None:
    token = keys.rsa.sign(claims(nbf=int(time.time()) + 3))
    assert (await secured.get(PROTECTED, headers=bearer(token))).status_code == 200


async def test_key_confusion_without_a_secret_is_401(
    make_settings: MakeSettings, jwks_server: JwksServer, keys: Keys
) -> None:
    # HS256 allowed but no JWT_SECRET: the public key must not step in as the HMAC secret.
    settings = jwks_settings(
        make_settings, jwks_server.url, jwt_secret=None, jwt_algorithms=["HS256", "RS256"]
    )
    async with running_app(create_app(settings)) as client:
        for material in (keys.rsa.public_pem, keys.rsa.public_der):
            response = await client.get(PROTECTED, headers=bearer(hmac_signed(material, claims())))
            assert_unauthenticated(response)
        ok = await client.get(PROTECTED, headers=bearer(keys.rsa.sign(claims())))
        assert ok.status_code == 200


async def test_an_oct_key_in_the_jwks_is_never_an_hmac_secret(
    make_settings: MakeSettings, jwks_server: JwksServer, keys: Keys
) -> None:
    shared = b"published-by-mistake-0123456789abcdef"
    jwks_server.publish(keys.rsa, {"kty": "oct", "kid": "shared", "k": b64url(shared)})
    async with running_app(create_app(jwks_settings(make_settings, jwks_server.url))) as client:
        forged = hmac_signed(shared, claims())
        head = b64url(json.dumps({"alg": "HS256", "kid": "shared"}).encode())
        with_kid = ".".join([head, *forged.split(".")[1:2]])
        mac = hmac.new(shared, with_kid.encode(), hashlib.sha256).digest()
        for token in (forged, f"{with_kid}.{b64url(mac)}"):
            assert_unauthenticated(await client.get(PROTECTED, headers=bearer(token)))


async def test_asymmetric_tokens_are_refused_when_only_hs256_is_allowed(
    make_settings: MakeSettings, jwks_server: JwksServer, keys: Keys
) -> None:
    settings = jwks_settings(make_settings, jwks_server.url, jwt_algorithms=["HS256"])
    async with running_app(create_app(settings)) as client:
        response = await client.get(PROTECTED, headers=bearer(keys.rsa.sign(claims())))
        assert_unauthenticated(response)
    assert jwks_server.requests == 0


async def test_kid_with_a_path_is_refused_without_a_fetch(
    secured: httpx.AsyncClient, keys: Keys, jwks_server: JwksServer
) -> None:
    for kid in ("../../../etc/passwd", "..%2f..%2fkeys", "a/b", "x" * 500, "kid\r\nX-Evil: 1"):
        response = await secured.get(PROTECTED, headers=bearer(keys.rsa.sign(claims(), kid=kid)))
        assert_unauthenticated(response)
    assert jwks_server.requests == 0


async def test_token_sent_in_the_query_string_is_not_accepted(
    secured: httpx.AsyncClient,
) -> None:
    response = await secured.get(PROTECTED, params={"access_token": hs256(claims())})
    assert_unauthenticated(response, token_sent=False)


async def test_a_valid_token_names_the_caller(
    make_settings: MakeSettings, jwks_server: JwksServer, keys: Keys
) -> None:
    app = create_app(jwks_settings(make_settings, jwks_server.url))

    @app.get("/v1/test-whoami")
    async def whoami(user: CurrentUser) -> dict[str, object]:
        return {"sub": user.sub, "email": user.email, "scopes": sorted(user.scopes)}

    token = keys.ec.sign(claims(sub="alice", email="a@example.com", scope="internal read"))
    async with running_app(app) as client:
        response = await client.get("/v1/test-whoami", headers=bearer(token))
        assert response.json() == {
            "sub": "alice",
            "email": "a@example.com",
            "scopes": ["internal", "read"],
        }
        # The second time the verdict comes from the verified-token cache: same caller.
        again = await client.get("/v1/test-whoami", headers=bearer(token))
        assert again.json() == response.json()
