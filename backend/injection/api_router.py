"""Route of the injection playground: POST /playground/chat/completions (OpenAI-compatible)."""

from __future__ import annotations

from fastapi import APIRouter

from backend.deps import InjectionDep
from backend.injection.protocol import ChatCompletionRequest
from common.errors import ERROR_RESPONSES

router = APIRouter(prefix="/playground", tags=["injection"])


@router.post("/chat/completions", responses=ERROR_RESPONSES)
async def chat_completions(body: ChatCompletionRequest, proxy: InjectionDep):
    """Forward to the model key's MAX server; ``stream: true`` is relayed as it arrives."""
    return await proxy.chat(body)
