"""Password hashing with Argon2id (argon2-cffi) and the password rules."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from yuanjian.errors import ValidationFailed

_hasher = PasswordHasher()
MIN_LENGTH = 10
# Verifying against this keeps the time of a login for an unknown user like a real one.
_DUMMY_HASH = _hasher.hash("yuanjian-timing-equaliser")


def hash_password(password: str) -> str:
    """Argon2id hash of a password that meets the rules."""
    check_password_rules(password)
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True if the password matches the stored hash."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def check_password_rules(password: str, *, field: str = "password") -> None:
    """Reject passwords that are too short or of one character class."""
    if len(password) < MIN_LENGTH:
        raise ValidationFailed(f"{field} must have at least {MIN_LENGTH} characters", field=field)
    classes = sum(
        [
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        ]
    )
    if classes < 2:
        raise ValidationFailed(
            f"{field} must mix at least two of: lower case, upper case, digits, symbols",
            field=field,
        )


def generate_password() -> str:
    """A random password that satisfies the rules."""
    return secrets.token_urlsafe(12) + "-7a"
