"""Token verification behind one small module, so the JWT library can be swapped in one place.

The key is chosen by the token's algorithm family, never by the token: an HS token only ever
meets `JWT_SECRET`; an RS/ES token only ever meets a JWKS key whose `kty` (and curve) fits its
algorithm, so no HMAC key is ever built from public key material. Key hints in the header
(`jku`, `jwk`, `x5u`) are ignored, and every decode passes a one-algorithm `algorithms=` list
(python-jose's defaults are permissive).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import httpx
from jose import jwk, jwt
from jose.backends.base import Key
from jose.exceptions import ExpiredSignatureError, JOSEError, JWTClaimsError, JWTError

from upload_service.config import Settings
from upload_service.errors import Unauthenticated
from upload_service.observability.context import correlation_id_var

logger = logging.getLogger("upload_service.auth")

LEEWAY_S = 10
# Real tokens are well under 2 KB; anything this big is an attack on the parser or the cache.
MAX_TOKEN_CHARS = 8192
VERIFIED_CACHE_SIZE = 4096
# A cached verdict is re-checked this often, so a key removed from the JWKS stops working.
VERIFIED_CACHE_MAX_AGE_S = 300.0
JWKS_TIMEOUT_S = 3.0
MAX_JWKS_BYTES = 256 * 1024
MAX_JWKS_KEYS = 64
MAX_KEYS_TRIED = 8
# A kid only ever indexes a dict here; the pattern still refuses paths and control characters.
_KID = re.compile(r"^[A-Za-z0-9._=+-]{1,128}$")
_HMAC = frozenset({"HS256", "HS384", "HS512"})
_KTY = {"RS256": "RSA", "RS384": "RSA", "RS512": "RSA", "ES256": "EC", "ES384": "EC"}
_CURVE = {"ES256": "P-256", "ES384": "P-384"}
# A malformed token must be a 401, whatever corner of the parser it reaches.
_DECODE_ERRORS = (JOSEError, ValueError, TypeError, KeyError, OverflowError)


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: `sub` is the user id that owns documents."""

    sub: str
    email: str | None
    scopes: frozenset[str]


class JwksKeys:
    """The key server's public signing keys, fetched through the shared client and cached."""

    def __init__(
        self, url: str, http: httpx.AsyncClient, *, ttl_s: float, min_refresh_s: float
    ) -> None:
        self._url = url
        self._http = http
        self._ttl_s = ttl_s
        self._min_refresh_s = min_refresh_s
        self._keys: list[dict[str, Any]] = []
        self._built: dict[tuple[int, str], Key] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        # One fetch at a time: concurrent requests with new kids wait for it, not add to it.
        self._lock = asyncio.Lock()

    async def keys_for(self, algorithm: str, kid: str | None) -> list[Key]:
        """The keys that may verify a token of `algorithm` naming `kid`, refreshed if needed."""
        now = time.monotonic()
        if self._fetched_at is None or now - self._fetched_at > self._ttl_s:
            await self._refresh()
        elif kid is not None and not any(key.get("kid") == kid for key in self._keys):
            await self._refresh()  # Once: a rotation may have published the key since.
        return self._matching(algorithm, kid)

    def _matching(self, algorithm: str, kid: str | None) -> list[Key]:
        found: list[Key] = []
        for index, data in enumerate(self._keys):
            if kid is not None and data.get("kid") != kid:
                continue
            if data.get("kty") != _KTY[algorithm] or data.get("use", "sig") != "sig":
                continue
            if data.get("alg", algorithm) != algorithm:
                continue
            if algorithm in _CURVE and data.get("crv") != _CURVE[algorithm]:
                continue
            built = self._built.get((index, algorithm))
            if built is None:
                try:
                    built = jwk.construct(data, algorithm)
                except _DECODE_ERRORS:
                    continue  # One unusable key must not hide the others.
                self._built[(index, algorithm)] = built
            found.append(built)
            if len(found) >= MAX_KEYS_TRIED:
                break
        return found

    async def _refresh(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._attempted_at is not None and now - self._attempted_at < self._min_refresh_s:
                return  # Fetched (or failed to) a moment ago: the flood bound.
            self._attempted_at = now
            try:
                keys = await self._fetch()
            except (httpx.HTTPError, httpx.InvalidURL, ValueError, TimeoutError) as exc:
                # Keep the keys we had: a key server outage should not log everyone out.
                logger.warning("JWKS fetch failed: %s", type(exc).__name__)
                return
            self._keys, self._built, self._fetched_at = keys, {}, now

    async def _fetch(self) -> list[dict[str, Any]]:
        headers = {"Accept": "application/json"}
        correlation_id = correlation_id_var.get()
        if correlation_id:
            headers["X-Correlation-ID"] = correlation_id
        body = bytearray()
        async with (
            asyncio.timeout(JWKS_TIMEOUT_S),
            self._http.stream("GET", self._url, headers=headers) as response,
        ):
            response.raise_for_status()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError("JWKS document too large")
        document = json.loads(body)
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("not a JWK set")
        # Only asymmetric keys: an `oct` key in a JWKS must never become an HMAC secret.
        keys = [
            key
            for key in document["keys"]
            if isinstance(key, dict) and key.get("kty") in ("RSA", "EC")
        ]
        return keys[:MAX_JWKS_KEYS]


class VerifiedTokens:
    """A bounded LRU of verified tokens, so a token is checked once, never trusted past `exp`."""

    def __init__(self, size: int = VERIFIED_CACHE_SIZE) -> None:
        self._size = size
        # Keyed by a digest of the whole token: same identity, bounded memory per entry.
        self._entries: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()

    def get(self, token: str) -> Principal | None:
        """The principal of a token verified before and not yet expired."""
        key = hashlib.sha256(token.encode()).digest()
        entry = self._entries.get(key)
        if entry is None:
            return None
        principal, valid_until = entry
        if time.time() >= valid_until:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return principal

    def put(self, token: str, principal: Principal, expires_at: float) -> None:
        """Remember a verified token until its `exp` (or the cache's own maximum age)."""
        valid_until = min(expires_at, time.time() + VERIFIED_CACHE_MAX_AGE_S)
        self._entries[hashlib.sha256(token.encode()).digest()] = (principal, valid_until)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


class TokenVerifier:
    """Verifies Bearer tokens against the configured algorithm allow-list and keys."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self._secret = settings.jwt_secret
        self._algorithms = frozenset(settings.jwt_algorithms)
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._jwks = (
            JwksKeys(
                settings.jwt_jwks_url,
                http,
                ttl_s=settings.jwt_jwks_cache_ttl_s,
                min_refresh_s=settings.jwt_jwks_min_refresh_s,
            )
            if settings.jwt_jwks_url
            else None
        )
        self._verified = VerifiedTokens()

    async def verify(self, token: str) -> Principal:
        """The principal a valid token names; `Unauthenticated` for anything else."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise Unauthenticated("Malformed token", token_sent=True)
        cached = self._verified.get(token)
        if cached is not None:
            return cached
        try:
            header = jwt.get_unverified_header(token)
        except _DECODE_ERRORS:
            raise Unauthenticated("Malformed token", token_sent=True) from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            raise Unauthenticated("Token algorithm not allowed", token_sent=True)
        key = await self._key_for(algorithm, header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={
                    "require_exp": True,
                    "require_sub": True,
                    "verify_aud": self._audience is not None,
                    "require_aud": self._audience is not None,
                    "require_iss": self._issuer is not None,
                    "leeway": LEEWAY_S,
                },
            )
        except ExpiredSignatureError:
            raise Unauthenticated("Token has expired", token_sent=True) from None
        except JWTError as exc:
            raise Unauthenticated(_rejection(exc), token_sent=True) from None
        except _DECODE_ERRORS:
            raise Unauthenticated("Invalid token", token_sent=True) from None
        principal = _principal(claims)
        self._verified.put(token, principal, float(claims["exp"]))
        return principal

    async def _key_for(self, algorithm: str, kid: object) -> str | Iterable[str]:
        if algorithm in _HMAC:
            if self._secret is None:
                raise Unauthenticated("No key for the token's algorithm", token_sent=True)
            return self._secret
        if algorithm not in _KTY or self._jwks is None:
            raise Unauthenticated("No key for the token's algorithm", token_sent=True)
        if kid is not None and not (isinstance(kid, str) and _KID.match(kid)):
            raise Unauthenticated("Malformed key id", token_sent=True)
        keys = await self._jwks.keys_for(algorithm, kid)
        if not keys:
            raise Unauthenticated("Unknown signing key", token_sent=True)
        # python-jose tries each key of a list; its stubs only admit lists of strings.
        return cast("Iterable[str]", keys)


def _rejection(exc: JWTError) -> str:
    # Claims are checked only once the signature is good, so naming the claim tells a forger
    # nothing; jose's claim messages name a claim, never its value. (A missing required claim
    # is a plain JWTError in python-jose, recognised by its text.)
    reason = str(exc)
    if isinstance(exc, JWTClaimsError) or reason.startswith("missing required key"):
        return f"Token claims rejected: {reason[:80]}"
    return "Invalid token"


def _principal(claims: dict[str, object]) -> Principal:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthenticated("Token has no subject", token_sent=True)
    email = claims.get("email")
    scope = claims.get("scope")
    return Principal(
        sub=sub,
        email=email if isinstance(email, str) else None,
        scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
    )


def mint_token(
    secret: str,
    sub: str,
    *,
    email: str | None = None,
    scopes: list[str] | None = None,
    ttl_s: int = 3600,
    algorithm: str = "HS256",
) -> str:
    """A signed development token (the `token` command and the tests)."""
    now = int(time.time())
    claims: dict[str, object] = {"sub": sub, "iat": now, "exp": now + ttl_s}
    if email:
        claims["email"] = email
    if scopes:
        claims["scope"] = " ".join(scopes)
    return str(jwt.encode(claims, secret, algorithm=algorithm))
