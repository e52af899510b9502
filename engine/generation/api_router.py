"""Routes of the engine service: parse, call the service once, answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from common import sse
from common.disconnect import ClientDisconnected, cancel_on_disconnect
from common.errors import ERROR_RESPONSES
from engine.generation.protocol import (
    BatchRequest,
    BatchResponse,
    GenerateRequest,
    GenerateResponse,
    HealthResponse,
    TokenizeRequest,
    TokenizeResponse,
)
from engine.generation.serving import GenerationService

router = APIRouter()

# nginx's "client closed request": nobody reads it, but logs show why the request ended.
CLIENT_CLOSED = 499


async def get_service(request: Request) -> GenerationService:
    return request.app.state.generation


ServiceDep = Annotated[GenerationService, Depends(get_service)]


STREAM_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {sse.MEDIA_TYPE: {"schema": {"type": "string"}}},
        "description": "with `stream: true`: events `prompt` (PromptEvent), `token` "
        "(TokenEvent) ..., then `done` "
        "(GenerateResponse) or `error` (ErrorResponse)",
    }
}


@router.post(
    "/generate",
    response_model=GenerateResponse,
    responses={**ERROR_RESPONSES, **STREAM_RESPONSE},
)
async def generate(body: GenerateRequest, request: Request, service: ServiceDep):
    if body.stream:  # a departed client cancels the stream, which aborts in the engine
        return sse.event_stream(await service.open_stream(body))
    try:
        return await cancel_on_disconnect(request, service.generate(body))
    except ClientDisconnected:
        return Response(status_code=CLIENT_CLOSED)


@router.post("/generate/batch", response_model=BatchResponse, responses=ERROR_RESPONSES)
async def generate_batch(body: BatchRequest, request: Request, service: ServiceDep):
    try:
        return await cancel_on_disconnect(request, service.generate_batch(body))
    except ClientDisconnected:
        return Response(status_code=CLIENT_CLOSED)


@router.post("/tokenize", response_model=TokenizeResponse, responses=ERROR_RESPONSES)
async def tokenize(body: TokenizeRequest, service: ServiceDep) -> TokenizeResponse:
    return await service.tokenize(body)


@router.get("/health", response_model=HealthResponse, responses=ERROR_RESPONSES)
async def health(service: ServiceDep) -> HealthResponse:
    return await service.health()
