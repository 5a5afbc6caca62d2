"""A secret for one person only (a Temporary Access Pass), sealed to their ephemeral key.

The orchestrator makes a key pair per reversal, sends the public key with the command and
gives the private key once to whoever asked; the worker seals the secret to the public key;
only the sealed blob is stored or sent. Sealing: an ephemeral X25519 key agreement with the
recipient's key, HKDF-SHA256 over the shared secret (salt: both public keys), AES-256-GCM.
Every value is base64url without padding; a blob is `eph_pub (32) || nonce (12) || ciphertext`.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"sortie sealed v1"
_KEY = 32
_NONCE = 12
_RAW = serialization.Encoding.Raw


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc


def _public_bytes(key: X25519PublicKey) -> bytes:
    return key.public_bytes(_RAW, serialization.PublicFormat.Raw)


def _aead(shared: bytes, eph_pub: bytes, recipient_pub: bytes) -> AESGCM:
    key = HKDF(hashes.SHA256(), _KEY, eph_pub + recipient_pub, _INFO).derive(shared)
    return AESGCM(key)


def new_keypair() -> tuple[str, str]:
    """(private, public), both base64url of the raw 32-byte X25519 keys."""
    private = X25519PrivateKey.generate()
    raw = private.private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return _b64(raw), _b64(_public_bytes(private.public_key()))


def _load_public(public_b64: str) -> X25519PublicKey:
    raw = _unb64(public_b64)
    if len(raw) != _KEY:
        raise ValueError("an X25519 public key is 32 bytes")
    return X25519PublicKey.from_public_bytes(raw)


def seal(public_b64: str, secret: str) -> str:
    """The sealed blob of `secret` for the holder of the private key of `public_b64`."""
    recipient = _load_public(public_b64)
    eph = X25519PrivateKey.generate()
    eph_pub = _public_bytes(eph.public_key())
    nonce = os.urandom(_NONCE)
    aead = _aead(eph.exchange(recipient), eph_pub, _public_bytes(recipient))
    return _b64(eph_pub + nonce + aead.encrypt(nonce, secret.encode(), eph_pub))


def unseal(private_b64: str, blob: str) -> str:
    """The secret sealed in `blob`; ValueError if the key is not the one it was sealed to,
    or the blob was altered."""
    raw_key = _unb64(private_b64)
    data = _unb64(blob)
    if len(raw_key) != _KEY or len(data) <= _KEY + _NONCE + 16:
        raise ValueError("malformed key or sealed blob")
    private = X25519PrivateKey.from_private_bytes(raw_key)
    eph_pub, nonce, ciphertext = data[:_KEY], data[_KEY : _KEY + _NONCE], data[_KEY + _NONCE :]
    eph = X25519PublicKey.from_public_bytes(eph_pub)
    aead = _aead(private.exchange(eph), eph_pub, _public_bytes(private.public_key()))
    try:
        return aead.decrypt(nonce, ciphertext, eph_pub).decode()
    except InvalidTag as exc:
        raise ValueError("the sealed blob does not open with this key") from exc
