"""Deterministic stand-ins for the engine, the SAE service and the MAX OpenAI servers.

Each is a real FastAPI app served over HTTP (``serve_app``) implementing contracts.md, with a
``mode`` switch for the fault cases: ``ok``, ``error500``, ``garbage`` (not JSON), ``wrong_shape``
(JSON of another shape), ``bad_timeline`` (SAE only: a malformed entry), ``gzip`` (OpenAI
only: a gzip-encoded stream), ``slow`` (sleeps past the backend's timeout), ``huge_ids`` (a
token id past 64 bits), ``nul_text`` (a NUL character in the output text and a token),
``no_labels`` (SAE only: no labels or examples, their routes 404).
"""

from __future__ import annotations

import asyncio
import gzip
import random
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

DEFAULT_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
BOS = 128000
CHAT_HEADER = [128006, 882, 128007, 271]
CHAT_FOOTER = [128009, 128006, 78191, 128007, 271]
SPECIAL_MIN = 128000
N_FEATURES = 40  # small, so features repeat across positions and aggregation is non-trivial


@dataclass
class StubState:
    mode: str = "ok"
    slow_s: float = 3.0
    health_calls: int = 0
    calls: list[dict[str, Any]] = field(default_factory=list)
    # GETs of the SAE catalog routes (/saes, labels, features), kept apart from ``calls``: the
    # backend also makes them on its own, at start-up.
    lookups: list[str] = field(default_factory=list)


def prompt_token_ids(prompt: str, chat: bool) -> list[int]:
    body = [1000 + ord(c) % 5000 for c in prompt[:48]]
    return [BOS, *CHAT_HEADER, *body, *CHAT_FOOTER] if chat else [BOS, *body]


def output_token_ids(prompt: str, max_tokens: int) -> list[int]:
    n = min(max_tokens, 6 + zlib.crc32(prompt.encode()) % 5)
    return [2000 + zlib.crc32(f"{prompt}:{i}".encode()) % 3000 for i in range(n)]


def features_at(token_id: int, position: int, top_k: int) -> list[dict[str, Any]]:
    rng = random.Random(zlib.crc32(f"{token_id}:{position}".encode()))
    count = rng.randint(0, min(top_k, 12))
    ids = rng.sample(range(N_FEATURES), count)
    # One decimal place, so equal maxima happen and the tie-breaks get exercised.
    acts = sorted((round(rng.uniform(0.1, 9.0), 1) for _ in ids), reverse=True)
    if token_id >= SPECIAL_MIN:
        acts = [a * 100 for a in acts]  # special tokens fire hugely, as in Llama Scope
    return [{"feature_id": f, "activation": a} for f, a in zip(ids, acts, strict=True)]


def stub_label(feature_id: int) -> str:
    """The stub SAE's label of a feature: a shared word and one of five others."""
    return (
        f"stub feature {feature_id} {['wake', 'login', 'names', 'actually', 'sky'][feature_id % 5]}"
    )


def timeline(token_ids: list[int], top_k: int, output_start: int | None) -> list[dict[str, Any]]:
    start = len(token_ids) if output_start is None else output_start
    return [
        {
            "position": p,
            "token_id": t,
            "token": f"<{t}>",
            "segment": "prompt" if p < start else "output",
            "special": t >= SPECIAL_MIN,
            "features": features_at(t, p, top_k),
        }
        for p, t in enumerate(token_ids)
    ]


async def _fault(state: StubState) -> Response | None:
    if state.mode == "slow":
        await asyncio.sleep(state.slow_s)
    if state.mode == "error500":
        return JSONResponse({"error": {"code": "boom", "message": "stub failure"}}, 500)
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
            return JSONResponse({"status": "down"}, 500)
        return {"status": "ok", "model_id": DEFAULT_MODEL, "backend": "stub", "device": "cpu"}

    @app.post("/generate")
    async def generate(request: Request):
        body = await request.json()
        state.calls.append(body)
        if (fault := await _fault(state)) is not None:
            return fault
        prompt_ids = prompt_token_ids(body["prompt"], body.get("chat", True))
        out = output_token_ids(body["prompt"], body["max_tokens"])
        text = " ".join(f"t{t}" for t in out)
        return {
            "request_id": body.get("request_id"),
            "model_id": body.get("model_id") or DEFAULT_MODEL,
            "output_text": text + "\x00" if state.mode == "nul_text" else text,
            "output_token_ids": [2**64] if state.mode == "huge_ids" else out,
            "prompt_token_ids": prompt_ids,
            "finish_reason": "length" if len(out) == body["max_tokens"] else "stop",
            "usage": {"prompt_tokens": len(prompt_ids), "output_tokens": len(out)},
            "timings_ms": {"queue": 0, "generate": 1},
        }

    return app


def sae_app(state: StubState) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/saes")
    async def saes():
        state.lookups.append("/saes")
        if (fault := await _fault(state)) is not None:
            return fault
        return {
            "default": {"sae_id": "llama_scope_lxr_8x", "layer": 16},
            "saes": [
                {
                    "sae_id": "llama_scope_lxr_8x",
                    "layers": [16],
                    "d_in": 4096,
                    "d_sae": 32768,
                    "architecture": "jumprelu",
                    "model_id": DEFAULT_MODEL,
                    "demo": False,
                    "description": "stub",
                    "has_labels": state.mode != "no_labels",
                    "has_examples": state.mode != "no_labels",
                }
            ],
        }

    @app.get("/saes/{sae_id}/{layer}/labels")
    async def labels(sae_id: str, layer: int):
        state.lookups.append(f"/saes/{sae_id}/{layer}/labels")
        if state.mode == "no_labels" or (sae_id, layer) != ("llama_scope_lxr_8x", 16):
            return JSONResponse({"error": {"code": "not_found", "message": "no labels"}}, 404)
        return {
            "sae_id": sae_id,
            "layer": layer,
            "d_sae": 32768,
            "labels": {str(i): stub_label(i) for i in range(N_FEATURES)},
        }

    @app.get("/features/{sae_id}/{layer}/{feature_id}")
    async def feature(sae_id: str, layer: int, feature_id: int):
        state.lookups.append(f"/features/{sae_id}/{layer}/{feature_id}")
        if state.mode == "no_labels" or feature_id >= N_FEATURES:
            return JSONResponse({"error": {"code": "not_found", "message": "no feature"}}, 404)
        return {
            "label": stub_label(feature_id),
            "examples": [
                {
                    "tokens": ["the", " stub", " word"],
                    "activations": [0.0, float(feature_id % 7) + 1.0, 0.5],
                    "max_activation": float(feature_id % 7) + 1.0,
                }
            ],
        }

    @app.post("/extract_features")
    async def extract(request: Request):
        body = await request.json()
        state.calls.append(body)
        if (fault := await _fault(state)) is not None:
            return fault
        if body["sae_id"] == "unknown_sae":
            return JSONResponse({"error": {"code": "not_found", "message": "no such SAE"}}, 404)
        entries = timeline(body["token_ids"], body["top_k"], body.get("output_start"))
        if state.mode == "bad_timeline":
            entries[0]["features"] = [{"feature_id": "seven", "activation": 1.0}]
        if state.mode == "nul_text":
            entries[-1]["token"] = "\x00"
        if state.mode == "huge_ids":
            entries[0]["token_id"] = 2**64
        return {
            "sae_id": body["sae_id"],
            "layer": body["layer"],
            "d_sae": 32768,
            "model_id": DEFAULT_MODEL,
            "feature_timeline": entries,
        }

    @app.post("/analyze_features")
    async def analyze(request: Request):
        body = await request.json()
        state.calls.append(body)
        if (fault := await _fault(state)) is not None:
            return fault
        features = []
        for fid in body["feature_ids"]:
            acts = [float((t * 31 + fid) % 7) for t in body["token_ids"]]
            best = max(range(len(acts)), key=acts.__getitem__)
            features.append(
                {
                    "feature_id": fid,
                    "activations": acts,
                    "max_activation": acts[best],
                    "argmax": best,
                    "explanation": None,
                }
            )
        return {"sae_id": body["sae_id"], "layer": body["layer"], "features": features}

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
