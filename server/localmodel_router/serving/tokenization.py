"""Tokenize and detokenize: the model's token ids for a text, and the text of token ids."""

from __future__ import annotations

from localmodel_router import translate
from localmodel_router.protocol.tokenization import (
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeRequest,
    TokenizeResponse,
)
from localmodel_router.serving import Service


class TokenizationService(Service):
    async def tokenize(self, request: TokenizeRequest) -> TokenizeResponse:
        route = self._discovery.table().resolve(request.model)
        options = translate.tokenize_request(request.text)
        result = await self._dispatcher.unary(route, lambda stub, t: stub.TokenizeString(options, timeout=t))
        return TokenizeResponse(tokens=list(result.tokens), count=len(result.tokens))

    async def detokenize(self, request: DetokenizeRequest) -> DetokenizeResponse:
        route = self._discovery.table().resolve(request.model)
        options = translate.detokenize_request(request.tokens)
        result = await self._dispatcher.unary(route, lambda stub, t: stub.Detokenize(options, timeout=t))
        text = result.message.decode("utf-8", "replace")
        return DetokenizeResponse(content=text, prompt=text)
