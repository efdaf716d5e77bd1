"""API keys: `Authorization: Bearer KEY`, checked against SHA-256 digests in constant time.

Only digests are kept in memory, and every configured key is compared on every request, so neither the
time taken nor a memory dump tells an attacker which key was close.
"""

from __future__ import annotations

import hashlib
import hmac

from localmodel_router.errors import AuthenticationError


class ApiKeys:
    def __init__(self, keys: list[str]) -> None:
        self._digests = [hashlib.sha256(key.encode()).digest() for key in keys if key]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def check(self, authorization: str | None, x_api_key: str | None = None) -> None:
        """Raise AuthenticationError unless the header carries a configured key (or keys are off);
        `x_api_key`: the `x-api-key` header, where a route takes it (Anthropic's clients send that)."""
        if not self._digests:
            return
        scheme, _, key = ("Bearer", " ", x_api_key) if x_api_key else (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise AuthenticationError("Missing API key: send `Authorization: Bearer YOUR_KEY`.")
        digest = hashlib.sha256(key.strip().encode()).digest()
        matched = False
        for known in self._digests:  # no early exit: the time does not depend on which key matched
            matched |= hmac.compare_digest(digest, known)
        if not matched:
            raise AuthenticationError("Incorrect API key provided.")

    def accepts(self, authorization: str | None) -> bool:
        """Whether the header would pass `check`."""
        try:
            self.check(authorization)
        except AuthenticationError:
            return False
        return True
