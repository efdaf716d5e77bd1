"""Kubernetes resource quantities (`24Gi`, `512M`, `1.5G`, plain bytes) as byte counts."""

from __future__ import annotations

import re

_SUFFIXES = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}
_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?")


def parse_bytes(quantity: str) -> int:
    """`24Gi` → 25769803776; ValueError naming the text for anything else (milli-bytes are not sizes)."""
    found = _QUANTITY.fullmatch(quantity.strip())
    if found is None:
        raise ValueError(f"{quantity!r}: expected a size such as 24Gi, 512Mi or 8G")
    number, suffix = found.groups()
    return int(float(number) * _SUFFIXES[suffix or ""])
