"""Embeddings: one vector per input (strings or token arrays), each input's tokens counted."""

from __future__ import annotations

import asyncio
import base64
import functools
import struct
from typing import TYPE_CHECKING

from localmodel_router import translate
from localmodel_router.discovery import ModelRoute
from localmodel_router.errors import BadRequestError
from localmodel_router.protocol.common import usage
from localmodel_router.protocol.embeddings import Embedding, EmbeddingList, EmbeddingRequest
from localmodel_router.serving import Service

if TYPE_CHECKING:
    from localmodel.wire import backend_pb2


class EmbeddingService(Service):
    async def embed(self, request: EmbeddingRequest) -> EmbeddingList:
        route = self._discovery.table().resolve(request.model, "embedding")
        if request.dimensions is not None:
            raise BadRequestError(
                "dimensions: not supported; the model's own size is returned", param="dimensions"
            )
        inputs = translate.embedding_requests(request.input)
        self._check_count("input", len(inputs))

        async def one(options: backend_pb2.PredictOptions) -> tuple[list[float], int]:
            result, tokens = await asyncio.gather(
                self._dispatcher.unary(route, lambda stub, t: stub.Embedding(options, timeout=t)),
                self._token_count(route, options),
            )
            return list(result.embeddings), tokens

        results = await self._each([functools.partial(one, options) for options in inputs])
        data = [
            Embedding(index=i, embedding=_encode(vector, request.encoding_format))
            for i, (vector, _) in enumerate(results)
        ]
        return EmbeddingList(data=data, model=request.model, usage=usage(sum(n for _, n in results)))

    async def _token_count(self, route: ModelRoute, options: backend_pb2.PredictOptions) -> int:
        if options.embedding_tokens:
            return len(options.embedding_tokens)
        tokenize = translate.tokenize_request(options.embeddings)
        result = await self._dispatcher.unary(route, lambda stub, t: stub.TokenizeString(tokenize, timeout=t))
        return int(result.length)


def _encode(vector: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":  # little-endian float32, as OpenAI sends it
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector
