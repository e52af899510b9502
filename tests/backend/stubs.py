"""Deterministic stand-ins for the engine, the SAE service and the MAX OpenAI servers.

Each is a real FastAPI app served over HTTP (``serve_app``) implementing contracts.md, with a
``mode`` switch for the fault cases: ``ok``, ``error500``, ``garbage`` (not JSON), ``wrong_shape``
(JSON of another shape), ``bad_timeline`` (SAE only: a malformed entry), ``gzip`` (OpenAI
only: a gzip-encoded stream), ``slow`` (sleeps past the backend's timeout), ``huge_ids`` (a
token id past 64 bits), ``nul_text`` (a NUL character in the output text and a token),
``no_labels`` (SAE only: an older SAE service, no labels or examples, their routes 404),
``reject`` (engine only: 422 ``context_length_exceeded``, as the real engine answers a prompt
too long for its context), ``short``/``long`` (SAE only: one position fewer/more than the tokens
asked about, in extract and analyze), ``hostile`` (HTML and script in the text the page shows: the
engine's rejection message, the SAE's description), ``no_steer`` (engine only: 422
``steering_unavailable``). Steering and the engine's event stream: ``steer_stubs.py``.

Every answer on the contract (any mode but ``garbage``, ``wrong_shape`` and ``bad_timeline``,
which are off it on purpose) is checked against the real service's own response model
(tests/support/contracts.py) before it is sent: a stub that drifts from engine/*/protocol.py
answers 500 and records the drift in ``StubState.drifts``, which fails the test that met it
(tests/backend/conftest.py).
"""

from __future__ import annotations

import asyncio
import gzip
import random
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel

from common import sse
from common.errors import ErrorResponse
from engine.generation import protocol as engine_protocol
from engine.sae import protocol as sae_protocol
from tests.backend import steer_stubs
from tests.support.contracts import ContractDrift, conforming

DEFAULT_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
BOS = 128000
CHAT_HEADER = [128006, 882, 128007, 271]
CHAT_FOOTER = [128009, 128006, 78191, 128007, 271]
SPECIAL_MIN = 128000
OTHER_SAE_ID, OTHER_SAE_LAYER = "other_sae", 3
N_FEATURES = 40  # small, so features repeat across positions and aggregation is non-trivial
D_SAE = 32768
SAE_ID = "llama_scope_lxr_8x"
SAE_LAYER = 16
# Text a page must show as text (mode ``hostile``).
HOSTILE = (
    '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
    '<b id="injected">bold</b> & "quoted"'
)
# Modes whose answers are off the contract on purpose (the faults under test).
OFF_CONTRACT = frozenset({"garbage", "wrong_shape", "bad_timeline"})


@dataclass
class StubState:
    mode: str = "ok"
    slow_s: float = 3.0
    # Seconds between a stream's token events (tests of streams that outlive their readers).
    stream_gap_s: float = 0.0
    # Answers this many output tokens (up to max_tokens) instead of the usual 6-10.
    output_len: int | None = None
    # Every position gets top_k features (a maximum-size run), not 0-12.
    dense: bool = False
    health_calls: int = 0
    calls: list[dict[str, Any]] = field(default_factory=list)
    # Engine only: bodies of POST /tokenize, kept apart from ``calls`` (no GPU work: the
    # backend's timeline budget asks for a long prompt's exact count before any /generate).
    tokenize_calls: list[dict[str, Any]] = field(default_factory=list)
    # X-Request-ID of each call in ``calls`` (the backend passes its request's id on).
    request_ids: list[str | None] = field(default_factory=list)
    # GETs of the SAE catalog routes (/saes, labels, features), kept apart from ``calls``: the
    # backend also makes them on its own, at start-up.
    lookups: list[str] = field(default_factory=list)
    # Answers that the real service's response model rejected (see module doc): must stay [].
    drifts: list[str] = field(default_factory=list)


def answer(
    state: StubState, model: type[BaseModel], body: dict[str, Any], status: int = 200
) -> Response:
    """``body`` as JSON, once held to the real service's ``model`` (unless the mode is one of
    the deliberate off-contract faults)."""
    if state.mode not in OFF_CONTRACT:
        try:
            conforming(model, body)
        except ContractDrift as exc:
            state.drifts.append(str(exc))
            return JSONResponse(
                {"error": {"code": "stub_drift", "message": str(exc), "upstream": None}}, 500
            )
    return JSONResponse(body, status)


def error(state: StubState, status: int, code: str, message: str) -> Response:
    info = {"code": code, "message": message, "upstream": None, "details": None}
    return answer(state, ErrorResponse, {"error": info}, status)


def prompt_token_ids(prompt: str, chat: bool) -> list[int]:
    body = [1000 + ord(c) % 5000 for c in prompt[:48]]
    return [BOS, *CHAT_HEADER, *body, *CHAT_FOOTER] if chat else [BOS, *body]


def output_token_ids(prompt: str, max_tokens: int, length: int | None = None) -> list[int]:
    n = min(max_tokens, length or 6 + zlib.crc32(prompt.encode()) % 5)
    return [2000 + zlib.crc32(f"{prompt}:{i}".encode()) % 3000 for i in range(n)]


def features_at(
    token_id: int, position: int, top_k: int, dense: bool = False
) -> list[dict[str, Any]]:
    rng = random.Random(zlib.crc32(f"{token_id}:{position}".encode()))
    count = top_k if dense else rng.randint(0, min(top_k, 12))
    ids = rng.sample(range(max(N_FEATURES, count)), count)
    # One decimal place, so equal maxima happen and the tie-breaks get exercised.
    acts = sorted((round(rng.uniform(0.1, 9.0), 1) for _ in ids), reverse=True)
    if token_id >= SPECIAL_MIN:
        acts = [a * 100 for a in acts]  # special tokens fire hugely, as in Llama Scope
    return [{"feature_id": f, "activation": a} for f, a in zip(ids, acts, strict=True)]


STUB_CONTEXT_WORDS = "giraffe ran across the savanna"  # feature 3's examples' words


def stub_label(feature_id: int) -> str:
    """The stub SAE's label of a feature: a shared word and one of five others."""
    return (
        f"stub feature {feature_id} {['wake', 'login', 'names', 'actually', 'sky'][feature_id % 5]}"
    )


def tokens(token_ids: list[int], output_start: int | None) -> list[dict[str, Any]]:
    start = len(token_ids) if output_start is None else output_start
    return [
        {
            "position": p,
            "token_id": t,
            "token": f"<{t}>",
            "segment": "prompt" if p < start else "output",
            "special": t >= SPECIAL_MIN,
        }
        for p, t in enumerate(token_ids)
    ]


def timeline(
    token_ids: list[int], top_k: int, output_start: int | None, dense: bool = False
) -> list[dict[str, Any]]:
    return [
        {**info, "features": features_at(info["token_id"], info["position"], top_k, dense)}
        for info in tokens(token_ids, output_start)
    ]


async def _fault(state: StubState) -> Response | None:
    if state.mode == "slow":
        await asyncio.sleep(state.slow_s)
    if state.mode == "error500":
        return error(state, 500, "boom", "stub failure")
    if state.mode == "garbage":
        return PlainTextResponse("<html>not json", 200)
    if state.mode == "wrong_shape":
        return JSONResponse({"unexpected": True}, 200)
    return None


def engine_app(state: StubState) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health():
        state.health_calls += 1
        if state.mode in ("error500", "down"):
            return error(state, 503, "service_unavailable", "engine not ready")
        return answer(state, engine_protocol.HealthResponse, {
            "status": "ok", "model_id": DEFAULT_MODEL, "backend": "vllm", "device": "cpu",
            "max_model_len": 131072, "in_flight": 0, "aborted": 0,
        })  # fmt: skip

    @app.post("/tokenize")
    async def tokenize(request: Request):
        body = await request.json()
        state.tokenize_calls.append(body)
        if (fault := await _fault(state)) is not None:
            return fault
        ids = prompt_token_ids(body["text"], body.get("chat", True))
        return answer(state, engine_protocol.TokenizeResponse, {
            "token_ids": ids, "tokens": [f"p{t}" for t in ids], "count": len(ids),
        })  # fmt: skip

    @app.post("/generate")
    async def generate(request: Request):
        body = await request.json()
        state.calls.append(body)
        state.request_ids.append(request.headers.get("x-request-id"))
        if (fault := await _fault(state)) is not None:
            return fault
        if state.mode == "reject":
            return error(state, 422, "context_length_exceeded", "prompt exceeds the context")
        if state.mode == "hostile":
            return error(state, 422, "context_length_exceeded", HOSTILE)
        salt, refusal = steer_stubs.steer_salt(state, body)
        if refusal is not None:
            return refusal
        prompt_ids = prompt_token_ids(body["prompt"], body.get("chat", True))
        out = output_token_ids(body["prompt"] + salt, body["max_tokens"], state.output_len)
        text = " ".join(f"t{t}" for t in out)
        result = {
            "request_id": body.get("request_id") or f"stub-{zlib.crc32(body['prompt'].encode())}",
            "model_id": body.get("model_id") or DEFAULT_MODEL,
            "output_text": text + "\x00" if state.mode == "nul_text" else text,
            "output_token_ids": [2**64] if state.mode == "huge_ids" else out,
            "prompt_token_ids": prompt_ids,
            "finish_reason": "length" if len(out) == body["max_tokens"] else "stop",
            "usage": {"prompt_tokens": len(prompt_ids), "output_tokens": len(out)},
            "timings_ms": {"queue": 0.0, "generate": 1.0, "total": 1.0},
        }  # fmt: skip
        if body.get("stream"):
            return StreamingResponse(_engine_events(state, result), media_type=sse.MEDIA_TYPE)
        return answer(state, engine_protocol.GenerateResponse, result)

    return app


async def _engine_events(state: StubState, result: dict[str, Any]) -> AsyncIterator[bytes]:
    """The engine's stream of ``result`` (``prompt``, ``token`` ..., ``done``), each event held
    to the real engine's model; ``stream_gap_s`` apart (tests of slow or unread streams)."""
    yield sse.frame("prompt", _conform(state, engine_protocol.PromptEvent, {
        "request_id": result["request_id"], "model_id": result["model_id"],
        "prompt_token_ids": result["prompt_token_ids"],
        "tokens": [f"p{t}" for t in result["prompt_token_ids"]],
    }))  # fmt: skip
    for step, token_id in enumerate(result["output_token_ids"]):
        await asyncio.sleep(state.stream_gap_s)
        text = ("" if step == 0 else " ") + f"t{token_id}"
        event = {"step": step, "token_id": token_id, "text": text}
        yield sse.frame("token", _conform(state, engine_protocol.TokenEvent, event))
    yield sse.frame("done", _conform(state, engine_protocol.GenerateResponse, result))


def _conform(state: StubState, model: type[BaseModel], body: dict[str, Any]) -> dict[str, Any]:
    try:
        return conforming(model, body)
    except ContractDrift as exc:
        state.drifts.append(f"{model.__name__}: {exc}")
        return body


def _positions(state: StubState, token_ids: list[int]) -> list[int]:
    """The tokens the SAE stub answers about: all, or one fewer/more (modes ``short``/``long``)."""
    if state.mode == "short":
        return token_ids[:-1]
    if state.mode == "long":
        return [*token_ids, token_ids[-1]]
    return token_ids


def sae_app(state: StubState) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health():
        return answer(state, sae_protocol.HealthResponse, {
            "status": "ok", "model_id": DEFAULT_MODEL, "device": "cpu", "dtype": "float32",
            "loaded_saes": [{"sae_id": SAE_ID, "layer": SAE_LAYER}], "torch_threads": 1,
            "queued_jobs": 0, "jobs_dropped": 0, "work_positions": 0, "stream_caches": None,
        })  # fmt: skip

    @app.get("/saes")
    async def saes():
        state.lookups.append("/saes")
        if (fault := await _fault(state)) is not None:
            return fault
        return answer(state, sae_protocol.SaesResponse, {
            "default": {"sae_id": SAE_ID, "layer": SAE_LAYER},
            "saes": [
                {
                    "sae_id": SAE_ID,
                    "layers": [SAE_LAYER],
                    "d_in": 4096,
                    "d_sae": D_SAE,
                    "architecture": "jumprelu",
                    "model_id": DEFAULT_MODEL,
                    "demo": False,
                    "description": HOSTILE if state.mode == "hostile" else "stub",
                    "has_labels": state.mode != "no_labels",
                    "has_examples": state.mode != "no_labels",
                },
                # A second SAE (no labels): runs may choose it (the backend checks the listing).
                {
                    "sae_id": OTHER_SAE_ID, "layers": [OTHER_SAE_LAYER], "d_in": 4096,
                    "d_sae": D_SAE, "architecture": "jumprelu", "model_id": DEFAULT_MODEL,
                    "demo": False, "description": "stub", "has_labels": False,
                    "has_examples": False,
                },
            ],
        })  # fmt: skip

    def unknown(sae_id: str, layer: int) -> Response | None:
        if sae_id != SAE_ID:
            return error(state, 404, "sae_not_found", f"no SAE {sae_id!r}")
        if layer != SAE_LAYER:
            return error(state, 404, "sae_layer_not_found", f"{sae_id} has no layer {layer}")
        return None

    @app.get("/saes/{sae_id}/{layer}/labels")
    async def labels(sae_id: str, layer: int):
        state.lookups.append(f"/saes/{sae_id}/{layer}/labels")
        if state.mode == "no_labels":  # an older SAE service: no such route
            return error(state, 404, "not_found", "Not Found")
        if (missing := unknown(sae_id, layer)) is not None:
            return missing
        return answer(state, sae_protocol.LabelsResponse, {
            "sae_id": sae_id,
            "layer": layer,
            "d_sae": D_SAE,
            "labels": {str(i): stub_label(i) for i in range(N_FEATURES)},
            "words": {"3": STUB_CONTEXT_WORDS},  # what search matches besides the label
        })  # fmt: skip

    @app.get("/features/{sae_id}/{layer}/{feature_id}")
    async def feature(sae_id: str, layer: int, feature_id: int):
        state.lookups.append(f"/features/{sae_id}/{layer}/{feature_id}")
        if state.mode == "no_labels":  # an older SAE service: no such route
            return error(state, 404, "not_found", "Not Found")
        if (missing := unknown(sae_id, layer)) is not None:
            return missing
        if not 0 <= feature_id < D_SAE:
            return error(state, 422, "feature_id_out_of_range", f"feature_id {feature_id}")
        peak = float(feature_id % 7) + 1.0
        known = feature_id < N_FEATURES  # the others: no label, no examples (as for the real one)
        return answer(state, sae_protocol.FeatureResponse, {
            "sae_id": sae_id,
            "layer": layer,
            "feature_id": feature_id,
            "d_sae": D_SAE,
            "label": stub_label(feature_id) if known else None,
            "examples": [
                {
                    "tokens": ["the", " stub", " word"],
                    "token_ids": [1820, 13947, 3492],
                    "activations": [0.0, peak, 0.5],
                    "max_index": 1,
                    "max_activation": peak,
                }
            ] if known else [],
        })  # fmt: skip

    @app.post("/extract_features")
    async def extract(request: Request):
        body = await request.json()
        state.calls.append(body)
        state.request_ids.append(request.headers.get("x-request-id"))
        if (fault := await _fault(state)) is not None:
            return fault
        if body["sae_id"] == "unknown_sae":
            return error(state, 404, "sae_not_found", "no such SAE")
        # A stream chunk (stream_id/from_position) answers from from_position on, as the real
        # service does; the stub keeps no cache, so every chunk ran its whole prefix (a miss).
        start, stream_id = body.get("from_position", 0), body.get("stream_id")
        ended = bool(stream_id and body.get("stream_end") and start == len(body["token_ids"]))
        entries = timeline(_positions(state, body["token_ids"]), body["top_k"],
                           body.get("output_start"), state.dense)[start:]  # fmt: skip
        if state.mode == "bad_timeline":
            entries[0]["features"] = [{"feature_id": "seven", "activation": 1.0}]
        if state.mode == "nul_text":
            entries[-1]["token"] = "\x00"
        if state.mode == "huge_ids":
            entries[0]["token_id"] = 2**64
        return answer(state, sae_protocol.ExtractResponse, {
            "sae_id": body["sae_id"],
            "layer": body["layer"],
            "d_sae": D_SAE,
            "model_id": DEFAULT_MODEL,
            "top_k": body["top_k"],
            "from_position": start,
            "feature_timeline": entries,
            "batch_size": 1,
            "work": {
                "positions": 0 if ended else len(body["token_ids"]),
                "cache": "miss" if stream_id and not ended else None,
            },
            "timings_ms": {"total": 1.0},
        })  # fmt: skip

    steer_stubs.add_steering_vectors(app, state)

    @app.post("/analyze_features")
    async def analyze(request: Request):
        body = await request.json()
        state.calls.append(body)
        if (fault := await _fault(state)) is not None:
            return fault
        if body["sae_id"] == "unknown_sae":
            return error(state, 404, "sae_not_found", "no such SAE")
        ids = _positions(state, body["token_ids"])
        features = []
        for fid in body["feature_ids"]:
            acts = [float((t * 31 + fid) % 7) for t in ids]
            best = max(range(len(acts)), key=acts.__getitem__)
            features.append(
                {
                    "feature_id": fid,
                    "activations": acts,
                    "max_activation": acts[best],
                    "argmax_position": best,
                    "explanation": None,
                }
            )
        return answer(state, sae_protocol.AnalyzeResponse, {
            "sae_id": body["sae_id"],
            "layer": body["layer"],
            "d_sae": D_SAE,
            "model_id": DEFAULT_MODEL,
            "tokens": tokens(ids, body.get("output_start")),
            "features": features,
        })  # fmt: skip

    return app


def openai_app(state: StubState, name: str) -> FastAPI:
    """An OpenAI-compatible server that records what it received."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        state.calls.append(
            {"body": body, "authorization": request.headers.get("authorization"), "server": name}
        )
        if (fault := await _fault(state)) is not None:
            return fault
        if body.get("stream"):

            async def events():
                for i, piece in enumerate(["Hel", "lo", "!"]):
                    chunk = {"id": "c1", "model": body["model"], "index": i, "delta": piece}
                    yield b"data: " + orjson.dumps(chunk) + b"\n\n"
                    await asyncio.sleep(0.01)
                yield b"data: [DONE]\n\n"

            if state.mode == "gzip":  # the whole stream gzip-encoded, sent in pieces

                async def gzipped():
                    raw = b"".join([chunk async for chunk in events()])
                    packed = gzip.compress(raw)
                    for start in range(0, len(packed), 16):
                        yield packed[start : start + 16]

                return StreamingResponse(
                    gzipped(),
                    media_type="text/event-stream",
                    headers={"content-encoding": "gzip"},
                )
            return StreamingResponse(events(), media_type="text/event-stream")
        return {
            "id": "c1",
            "object": "chat.completion",
            "model": body["model"],
            "server": name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}}],
        }

    return app
