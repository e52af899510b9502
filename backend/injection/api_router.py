"""Route of the injection playground: POST /playground/chat/completions (OpenAI-compatible)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from backend.injection.protocol import ChatCompletionRequest
from backend.injection.proxy import InjectionProxy
from common.errors import ERROR_RESPONSES

router = APIRouter(prefix="/playground", tags=["injection"])


async def get_injection(request: Request) -> InjectionProxy:
    return request.app.state.injection


InjectionDep = Annotated[InjectionProxy, Depends(get_injection)]


@router.post("/chat/completions", responses=ERROR_RESPONSES)
async def chat_completions(body: ChatCompletionRequest, proxy: InjectionDep):
    """Forward to the model key's MAX server; ``stream: true`` is relayed as it arrives."""
    return await proxy.chat(body)
