"""Unified social credit codes are checked by their GB 32100-2015 check character."""

from __future__ import annotations

import pytest
from stdnum.cn import uscc

from yuanjian.errors import ValidationFailed
from yuanjian.identity.codes import validate_credit_code


def test_valid_code_is_normalized() -> None:
    assert validate_credit_code(" 91110000600037341l ") == "91110000600037341L"


@pytest.mark.parametrize(
    ("code", "needle"),
    [
        ("91110000600037341A", "check character"),
        ("9111000060003734", "18 characters"),
        ("", "18 characters"),
        ("91110000600037341I", "not a valid"),
    ],
)
def test_invalid_codes_name_the_field(code: str, needle: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_credit_code(code, field="credit_code")
    assert info.value.field == "credit_code"
    assert needle in info.value.message
    assert "credit_code" in info.value.message


def test_every_wrong_check_character_is_refused() -> None:
    body = "91410100MA44XXXX0"
    good = uscc.calc_check_digit(body)
    for ch in "0123456789ABCDEFGHJKLMNPQRTUWXY":
        if ch == good:
            assert validate_credit_code(body + ch) == body + ch
        else:
            with pytest.raises(ValidationFailed):
                validate_credit_code(body + ch)
