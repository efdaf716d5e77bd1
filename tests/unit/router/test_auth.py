from __future__ import annotations

import pytest

from localmodel_router.auth import ApiKeys
from localmodel_router.errors import AuthenticationError


@pytest.mark.parametrize("header", ["Bearer one", "bearer two", "Bearer  two "])
def test_configured_keys_pass(header: str) -> None:
    ApiKeys(["one", "two"]).check(header)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer three", "Basic one", "one"])
def test_anything_else_is_401(header: str | None) -> None:
    with pytest.raises(AuthenticationError) as caught:
        ApiKeys(["one", "two"]).check(header)
    assert caught.value.status == 401 and caught.value.body()["error"]["code"] == "invalid_api_key"


def test_no_keys_means_no_authentication() -> None:
    keys = ApiKeys([])
    assert not keys.enabled
    keys.check(None)


def test_only_digests_are_kept() -> None:
    keys = ApiKeys(["s3cret"])
    assert "s3cret" not in repr(vars(keys))
