"""JWKS over real HTTP: keys cached, rotation picked up, floods bounded, outages are 401s."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.fixtures.app import MakeSettings, free_port, running_app
from tests.fixtures.jwks import JwksServer, Keys, Mode, claims, hs256, random_kid
from tests.integration.security.conftest import (
    PROTECTED,
    assert_unauthenticated,
    bearer,
    jwks_settings,
)
from upload_service.main import create_app

FAST_REFRESH = {"jwt_jwks_min_refresh_s": 0.2}


async def test_keys_are_fetched_once_and_reused(
    secured: httpx.AsyncClient, keys: Keys, jwks_server: JwksServer
) -> None:
    for sub in ("a", "b", "c", "d"):
        for key in (keys.rsa, keys.ec):
            response = await secured.get(PROTECTED, headers=bearer(key.sign(claims(sub=sub))))
            assert response.status_code == 200
    assert jwks_server.requests == 1


async def test_rotation_to_a_new_kid_is_picked_up_without_restart(
    make_settings: MakeSettings, keys: Keys, jwks_server: JwksServer
) -> None:
    settings = jwks_settings(make_settings, jwks_server.url, **FAST_REFRESH)
    async with running_app(create_app(settings)) as client:
        old = await client.get(PROTECTED, headers=bearer(keys.rsa.sign(claims())))
        assert old.status_code == 200
        jwks_server.publish(keys.rsa_next, keys.ec)  # rsa-1 retired, rsa-2 published
        await asyncio.sleep(0.3)

        new = await client.get(PROTECTED, headers=bearer(keys.rsa_next.sign(claims())))
        assert new.status_code == 200, new.text
        assert jwks_server.requests == 2

        # A token that was never seen, signed with the retired key, no longer gets in.
        await asyncio.sleep(0.3)
        retired = await client.get(PROTECTED, headers=bearer(keys.rsa.sign(claims(sub="x"))))
        assert_unauthenticated(retired)


async def test_keys_are_refetched_when_the_cache_ttl_ends(
    make_settings: MakeSettings, keys: Keys, jwks_server: JwksServer
) -> None:
    settings = jwks_settings(
        make_settings, jwks_server.url, jwt_jwks_cache_ttl_s=0.3, jwt_jwks_min_refresh_s=0
    )
    async with running_app(create_app(settings)) as client:
        assert (await client.get(PROTECTED, headers=bearer(keys.ec.sign(claims())))).is_success
        await asyncio.sleep(0.4)
        token = keys.ec.sign(claims(sub="later"))
        assert (await client.get(PROTECTED, headers=bearer(token))).is_success
    assert jwks_server.requests == 2


@pytest.mark.parametrize("warm", [True, False], ids=["after-a-fetch", "cold-cache"])
async def test_100_random_kids_cause_a_bounded_number_of_fetches(
    secured: httpx.AsyncClient, keys: Keys, jwks_server: JwksServer, warm: bool
) -> None:
    if warm:
        assert (await secured.get(PROTECTED, headers=bearer(keys.rsa.sign(claims())))).is_success
    tokens = [keys.attacker_rsa.sign(claims(), kid=random_kid()) for _ in range(100)]
    responses = await asyncio.gather(
        *(secured.get(PROTECTED, headers=bearer(token)) for token in tokens)
    )
    for response in responses:
        assert_unauthenticated(response)
    # One fetch to fill the cache, at most one refresh for the unknown kids: not 100.
    assert jwks_server.requests <= 2
    # And the flood did not break verification for everyone else.
    ok = await secured.get(PROTECTED, headers=bearer(keys.ec.sign(claims(sub="after"))))
    assert ok.status_code == 200


async def test_jwks_server_down_is_401_not_500(
    make_settings: MakeSettings, keys: Keys, jwks_server: JwksServer
) -> None:
    jwks_server.stop()
    async with running_app(create_app(jwks_settings(make_settings, jwks_server.url))) as client:
        response = await client.get(PROTECTED, headers=bearer(keys.rsa.sign(claims())))
        assert_unauthenticated(response)
        # HS256 tokens do not depend on the key server.
        assert (await client.get(PROTECTED, headers=bearer(hs256(claims())))).status_code == 200


async def test_nothing_listening_at_the_jwks_url_is_401(
    make_settings: MakeSettings, keys: Keys
) -> None:
    url = f"http://127.0.0.1:{free_port()}/jwks.json"
    async with running_app(create_app(jwks_settings(make_settings, url))) as client:
        response = await client.get(PROTECTED, headers=bearer(keys.ec.sign(claims())))
        assert_unauthenticated(response)


@pytest.mark.parametrize("mode", ["error", "garbage", "huge"])
async def test_a_broken_jwks_answer_is_401(
    make_settings: MakeSettings, keys: Keys, jwks_server: JwksServer, mode: Mode
) -> None:
    jwks_server.set_mode(mode)
    async with running_app(create_app(jwks_settings(make_settings, jwks_server.url))) as client:
        response = await client.get(PROTECTED, headers=bearer(keys.rsa.sign(claims())))
        assert_unauthenticated(response)


async def test_verification_recovers_when_the_key_server_returns(
    make_settings: MakeSettings, keys: Keys, jwks_server: JwksServer
) -> None:
    jwks_server.set_mode("error")
    settings = jwks_settings(make_settings, jwks_server.url, **FAST_REFRESH)
    async with running_app(create_app(settings)) as client:
        token = keys.rsa.sign(claims())
        assert_unauthenticated(await client.get(PROTECTED, headers=bearer(token)))
        jwks_server.set_mode("ok")
        await asyncio.sleep(0.3)
        assert (await client.get(PROTECTED, headers=bearer(token))).status_code == 200


async def test_known_keys_survive_a_key_server_outage(
    make_settings: MakeSettings, keys: Keys, jwks_server: JwksServer
) -> None:
    settings = jwks_settings(
        make_settings, jwks_server.url, jwt_jwks_cache_ttl_s=0.2, jwt_jwks_min_refresh_s=0
    )
    async with running_app(create_app(settings)) as client:
        assert (await client.get(PROTECTED, headers=bearer(keys.rsa.sign(claims())))).is_success
        jwks_server.set_mode("error")
        await asyncio.sleep(0.3)  # The cache is stale: the refetch fails, the keys are kept.
        token = keys.rsa.sign(claims(sub="during-outage"))
        assert (await client.get(PROTECTED, headers=bearer(token))).status_code == 200
    assert jwks_server.requests == 2
