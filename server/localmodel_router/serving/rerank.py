"""Rerank: documents ordered by relevance to a query (Jina/Cohere shape)."""

from __future__ import annotations

from localmodel_router import translate
from localmodel_router.protocol.rerank import (
    RerankDocument,
    RerankRequest,
    RerankResponse,
    RerankResult,
    RerankUsage,
)
from localmodel_router.serving import Service


class RerankService(Service):
    async def rerank(self, request: RerankRequest) -> RerankResponse:
        route = self._discovery.table().resolve(request.model, "rerank")
        options = translate.rerank_request(request)
        result = await self._dispatcher.unary(route, lambda stub, t: stub.Rerank(options, timeout=t))
        results = [
            RerankResult(
                index=r.index,
                relevance_score=r.relevance_score,
                document=RerankDocument(text=request.documents[r.index])
                if request.return_documents
                else None,
            )
            for r in sorted(result.results, key=lambda r: r.relevance_score, reverse=True)
        ][: request.top_n]
        tokens = RerankUsage(prompt_tokens=result.usage.prompt_tokens, total_tokens=result.usage.total_tokens)
        return RerankResponse(model=request.model, results=results, usage=tokens)
