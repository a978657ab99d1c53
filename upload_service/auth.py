"""Token verification behind one small module, so the JWT library can be swapped in one place.

Keys are chosen by the token's algorithm family: an HS token only ever meets `JWT_SECRET`,
and every decode passes an explicit `algorithms=` list (python-jose's defaults are permissive).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from jose import jwt
from jose.exceptions import JOSEError

from upload_service.config import Settings
from upload_service.errors import Unauthenticated

LEEWAY_S = 10
_HMAC = ("HS256", "HS384", "HS512")


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: `sub` is the user id that owns documents."""

    sub: str
    email: str | None
    scopes: frozenset[str]


class TokenVerifier:
    """Verifies Bearer tokens against the configured algorithm allow-list and keys."""

    def __init__(self, settings: Settings) -> None:
        self._secret = settings.jwt_secret
        self._algorithms = list(settings.jwt_algorithms)
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer

    def verify(self, token: str) -> Principal:
        """The principal a valid token names; `Unauthenticated` for anything else."""
        try:
            header = jwt.get_unverified_header(token)
        except JOSEError:
            raise Unauthenticated("Malformed token", token_sent=True) from None
        algorithm = header.get("alg")
        if algorithm not in self._algorithms:
            raise Unauthenticated("Token algorithm not allowed", token_sent=True)
        if algorithm not in _HMAC or self._secret is None:
            raise Unauthenticated("No key for the token's algorithm", token_sent=True)
        try:
            claims = jwt.decode(
                token,
                self._secret,
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
        except JOSEError:
            raise Unauthenticated("Invalid or expired token", token_sent=True) from None
        return _principal(claims)


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
