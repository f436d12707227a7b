"""The classification labels the detectors assign and policies, operators and risk rules key on.

One definition, kept free of heavy imports so that the review and policy modules can use it
without loading pyarrow or the detector.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["LABELS", "NONE", "Label"]

Label = Literal[
    "cn_resident_id",
    "cn_uscc",
    "cn_mobile",
    "cn_landline",
    "bank_card",
    "email",
    "ip_address",
    "cn_license_plate",
    "passport",
    "person_name",
    "address",
    "date_of_birth",
    "geo_coordinate",
    "free_text_with_pii",
    "none",
]
LABELS: tuple[str, ...] = get_args(Label)
NONE = "none"
