"""Hash algorithms for the audit log: SHA-256 (default) and SM3 (GB/T 32905-2016).

Both produce 32-byte digests, so a log can use either without changing its storage layout.
SHA-256 goes straight to :mod:`hashlib`. SM3 uses OpenSSL through :mod:`hashlib` when the local
OpenSSL offers it (it is several times faster than building a ``cryptography`` hash object per
call, which matters on the Merkle hot path) and otherwise ``cryptography``'s ``hashes.SM3``;
both are checked against the GB/T 32905 example vector before use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes

__all__ = [
    "DEFAULT_ALG",
    "SUPPORTED_ALGS",
    "HashFunction",
    "UnknownHashAlgorithmError",
    "check_alg",
    "digest",
    "digest_size",
    "get_hasher",
]

HashFunction = Callable[[bytes], bytes]

DEFAULT_ALG = "sha256"
SUPPORTED_ALGS: tuple[str, ...] = ("sha256", "sm3")

# GB/T 32905-2016 Appendix A, example 1: SM3("abc").
_SM3_ABC = bytes.fromhex("66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0")


class UnknownHashAlgorithmError(ValueError):
    """Raised for a hash algorithm name that is not one of SUPPORTED_ALGS."""

    def __init__(self, alg: object, field: str = "alg") -> None:
        self.alg = alg
        self.field = field
        super().__init__(
            f"{field}: unknown hash algorithm {alg!r} (supported: {', '.join(SUPPORTED_ALGS)})"
        )


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _sm3_cryptography(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def _make_sm3() -> HashFunction:
    try:
        proto = hashlib.new("sm3")
    except ValueError:
        return _sm3_cryptography
    probe = proto.copy()
    probe.update(b"abc")
    if probe.digest() != _SM3_ABC:  # pragma: no cover - a broken OpenSSL build
        return _sm3_cryptography
    copy = proto.copy

    def _sm3_openssl(data: bytes) -> bytes:
        h = copy()
        h.update(data)
        return h.digest()

    return _sm3_openssl


_HASHERS: dict[str, HashFunction] = {"sha256": _sha256, "sm3": _make_sm3()}
_SIZES: dict[str, int] = {"sha256": 32, "sm3": 32}


def check_alg(alg: object, field: str = "alg") -> str:
    """Return alg if it names a supported hash algorithm, else raise UnknownHashAlgorithmError."""
    if not isinstance(alg, str) or alg not in _HASHERS:
        raise UnknownHashAlgorithmError(alg, field)
    return alg


def get_hasher(alg: str = DEFAULT_ALG) -> HashFunction:
    """Return a function mapping bytes to the digest under alg ("sha256" or "sm3")."""
    try:
        return _HASHERS[alg]
    except (KeyError, TypeError):
        raise UnknownHashAlgorithmError(alg) from None


def digest(alg: str, data: bytes) -> bytes:
    """Hash data with alg and return the digest bytes."""
    return get_hasher(alg)(data)


def digest_size(alg: str = DEFAULT_ALG) -> int:
    """Return the digest length in bytes of alg."""
    return _SIZES[check_alg(alg)]
