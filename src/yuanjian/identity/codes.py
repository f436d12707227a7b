"""Validation of identifiers issued under Chinese standards (via python-stdnum)."""

from __future__ import annotations

from stdnum.cn import uscc
from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidFormat, InvalidLength

from yuanjian.errors import ValidationFailed


def validate_credit_code(value: str, *, field: str = "credit_code") -> str:
    """Return the normalized unified social credit code, or raise naming the field (GB 32100)."""
    code = (value or "").strip().upper()
    try:
        return str(uscc.validate(code))
    except InvalidLength:
        raise ValidationFailed(
            f"{field}: a unified social credit code has 18 characters, got {len(code)}", field=field
        ) from None
    except InvalidChecksum:
        raise ValidationFailed(
            f"{field}: check character of {code!r} is wrong (GB 32100-2015)", field=field
        ) from None
    except (InvalidFormat, InvalidComponent):
        raise ValidationFailed(
            f"{field}: {code!r} is not a valid unified social credit code", field=field
        ) from None
