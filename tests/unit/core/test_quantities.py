from __future__ import annotations

import pytest

from localmodel.quantities import parse_bytes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24Gi", 24 << 30),
        ("512Mi", 512 << 20),
        ("8G", 8 * 10**9),
        ("1.5Gi", 3 << 29),
        ("1000", 1000),
        ("2Ki", 2048),
    ],
)
def test_sizes(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["lots", "24GB", "-1Gi", "500m", ""])
def test_anything_else_is_refused_naming_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="expected a size such as 24Gi"):
        parse_bytes(text)
