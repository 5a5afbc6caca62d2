"""OpenID Connect Back-Channel Logout 1.0 logout tokens, signed by Sortie (PyJWT).

Token format: https://openid.net/specs/openid-connect-backchannel-1_0.html#LogoutToken
(`typ: logout+jwt`, `iss`, `aud`, `iat`, `exp`, `jti`, `sub`/`sid`, the back-channel
`events` member, never a `nonce`). Key ids are RFC 7638 thumbprints of the public key.
The private key is read from a PEM file and never leaves this object.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.api_jws import PyJWS
from jwt.utils import base64url_encode

BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TYPE = "logout+jwt"
# RFC 7638 §3.2: the required members of each key type, in lexicographic order.
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}


class SigningKeyError(ValueError):
    """The signing key file is missing, unreadable or of an unsupported kind."""


def jwk_thumbprint(public_jwk: dict[str, Any]) -> str:
    members = _THUMBPRINT_MEMBERS[public_jwk["kty"]]
    canonical = json.dumps(
        {m: public_jwk[m] for m in members}, separators=(",", ":"), sort_keys=True
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64url_encode(digest).decode()


class LogoutTokenSigner:
    def __init__(self, pem: bytes, *, issuer: str, ttl_s: float = 120.0) -> None:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError("the OIDC signing key is not an unencrypted PEM key") from exc
        if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
            self.algorithm = "ES256"
            public = json.loads(ECAlgorithm.to_jwk(key.public_key()))
        elif isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
            self.algorithm = "RS256"
            public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
        else:
            raise SigningKeyError("the OIDC signing key must be EC P-256 or RSA >= 2048 bits")
        self.kid = jwk_thumbprint(public)
        # `use` only: PyJWT adds `key_ops`, and RFC 7517 §4.3 says not both (cryptojwt,
        # behind idpyoidc, refuses a key with both).
        public.pop("key_ops", None)
        self.public_jwk: dict[str, Any] = {
            **public,
            "kid": self.kid,
            "use": "sig",
            "alg": self.algorithm,
        }
        # Set once the key was retired (see sortie_core.jwks): nothing is signed any more.
        self.retired = False
        self._key = key
        self.issuer = issuer
        self.ttl_s = ttl_s
        # What `jwt.encode` does for every token, done once: the protected header (PyJWT
        # writes it compact, keys sorted) and the algorithm; each token then costs its
        # claims and the signature alone (PyJWT's own `sign`, DER to raw for ES256).
        header = {"alg": self.algorithm, "kid": self.kid, "typ": LOGOUT_TOKEN_TYPE}
        self._header = base64url_encode(
            json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
        )
        self._signing = PyJWS().get_algorithm_by_name(self.algorithm)

    @classmethod
    def from_file(cls, path: Path, *, issuer: str, ttl_s: float = 120.0) -> LogoutTokenSigner:
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise SigningKeyError(
                f"cannot read the OIDC signing key file ({exc.strerror})"
            ) from exc
        return cls(pem, issuer=issuer, ttl_s=ttl_s)

    def __repr__(self) -> str:
        return f"LogoutTokenSigner(kid={self.kid!r}, alg={self.algorithm!r})"

    def sign(
        self, audience: str, *, sub: str | None, sid: str | None = None, now: float | None = None
    ) -> str:
        if not sub and not sid:
            raise ValueError("a logout token needs sub or sid")
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            "iat": issued,
            "exp": issued + int(self.ttl_s),
            "jti": str(uuid.uuid4()),
            "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
        }
        if sub:
            claims["sub"] = sub
        if sid:
            claims["sid"] = sid
        payload = base64url_encode(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = self._header + b"." + payload
        signature = self._signing.sign(signing_input, self._key)
        return (signing_input + b"." + base64url_encode(signature)).decode()
