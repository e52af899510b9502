"""The generation service: prompt -> token IDs -> vLLM's AsyncLLM -> answer with token IDs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from common import sse
from common.errors import ApiError, ErrorResponse, InvalidRequest, ServiceUnavailable
from engine.generation import shaping, steering
from engine.generation.prompts import PromptEncoder
from engine.generation.protocol import (
    BatchRequest,
    BatchResponse,
    GenerateRequest,
    GenerateResponse,
    HealthResponse,
    PromptEvent,
    TokenEvent,
    TokenizeRequest,
    TokenizeResponse,
)
from engine.generation.runtime import device_name
from engine.generation.settings import EngineSettings
from engine.generation.steering import SteeringSupport, SteerSpec
from engine.generation.token_text import TokenTexts

if TYPE_CHECKING:
    from vllm.v1.engine.async_llm import AsyncLLM


class GenerationService:
    """Owns the engine's use: tokenization, bounds, sampling parameters and answer shaping."""

    def __init__(
        self,
        engine: AsyncLLM,
        tokenizer: Any,
        settings: EngineSettings,
        steering: SteeringSupport | None = None,
    ) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.prompts = PromptEncoder(tokenizer)
        self.settings = settings
        self.eos_ids = shaping.eos_ids(settings, tokenizer)
        self.device = device_name()
        self.aborted = 0  # requests cancelled before they finished (health shows it)
        self.steered = 0  # requests that ran with a steering vector (/metrics)
        # Whether the vLLM workers attached steering (steering.probe); unknown: refused.
        self.steering = steering or SteeringSupport(False, "not probed")

    @classmethod
    async def from_engine(cls, engine: AsyncLLM, settings: EngineSettings) -> GenerationService:
        # The engine's own tokenizer: our prompt IDs are tokenized exactly as vLLM would.
        return cls(engine, engine.get_tokenizer(), settings, await steering.probe(engine))

    # -- tokenization ------------------------------------------------------------------------

    def encode(self, text: str, *, chat: bool, parse_special_tokens: bool = False) -> list[int]:
        """Chat: one user turn, its text never parsed for special tokens; raw: BOS + text."""
        return self.prompts.encode(text, chat=chat, parse_special_tokens=parse_special_tokens)

    async def tokenize(self, request: TokenizeRequest) -> TokenizeResponse:
        ids = await asyncio.to_thread(
            self.encode,
            request.text,
            chat=request.chat,
            parse_special_tokens=request.parse_special_tokens,
        )
        tokens = [self.tokenizer.decode([i], skip_special_tokens=False) for i in ids]
        return TokenizeResponse(token_ids=ids, tokens=tokens, count=len(ids))

    # -- generation --------------------------------------------------------------------------

    def check_request(self, request: GenerateRequest, where: str = "") -> None:
        """Bounds known before tokenizing (cheap): checked for every request of a batch first."""
        if request.steer:  # bounds, vectors and support: 422 before anything runs
            self.steer_spec(request, where)
        if request.max_tokens > self.settings.max_output_tokens:
            raise InvalidRequest(
                f"{where}max_tokens {request.max_tokens} exceeds this engine's bound of "
                f"{self.settings.max_output_tokens}",
                code="max_tokens_too_large",
            )
        # Even one token per prompt (the BOS) leaves no room for this output.
        if 1 + request.max_tokens > self.settings.max_model_len:
            raise InvalidRequest(
                f"{where}max_tokens {request.max_tokens} leaves no room for a prompt in the "
                f"model's context of {self.settings.max_model_len} tokens",
                code="context_length_exceeded",
            )

    def check_bounds(self, request: GenerateRequest, prompt_len: int, where: str = "") -> None:
        limit = self.settings.max_model_len
        if prompt_len + request.max_tokens > limit:
            raise InvalidRequest(
                f"{where}prompt of {prompt_len} tokens plus max_tokens {request.max_tokens} "
                f"exceeds the model's context of {limit} tokens",
                code="context_length_exceeded",
            )

    def steer_spec(self, request: GenerateRequest, where: str = "") -> SteerSpec | None:
        if not request.steer:
            return None
        return steering.steer_spec(request.steer, self.steering, self.settings, where)

    async def _prepare(self, request: GenerateRequest, where: str = "") -> list[int]:
        self.check_request(request, where)
        prompt_ids = await asyncio.to_thread(
            self.encode,
            request.prompt,
            chat=request.chat,
            parse_special_tokens=request.parse_special_tokens,
        )
        self.check_bounds(request, len(prompt_ids), where)
        return prompt_ids

    async def _outputs(
        self, request: GenerateRequest, prompt_ids: list[int], engine_id: str, *, delta: bool
    ) -> AsyncIterator[Any]:
        """vLLM's outputs for one request, its failures mapped to our errors. Cancelling the
        consumer cancels vLLM's generate(), which aborts the request in the engine."""
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind
        from vllm.v1.engine.exceptions import EngineDeadError

        params = shaping.sampling_params(request, self.eos_ids)
        if delta:
            params.output_kind = RequestOutputKind.DELTA
        prompt = TokensPrompt(prompt_token_ids=prompt_ids)
        spec = self.steer_spec(request)
        if spec is not None:
            self.steered += 1
            params.extra_args = spec.extra_args
            prompt["cache_salt"] = spec.cache_salt
        try:
            async for output in self.engine.generate(prompt, params, request_id=engine_id):
                yield output
        except (asyncio.CancelledError, GeneratorExit):
            # The caller left (a cancelled wait, or a stream closed early): vLLM aborts the
            # request on the way out.
            self.aborted += 1
            raise
        except EngineDeadError as exc:
            raise ServiceUnavailable(f"the vLLM engine is dead: {exc}") from exc
        except ValueError as exc:  # vLLM's own input validation
            raise InvalidRequest(str(exc), code="engine_rejected") from exc

    async def _run(self, request: GenerateRequest, prompt_ids: list[int]) -> GenerateResponse:
        received = time.perf_counter()
        request_id, engine_id = shaping.request_ids(request)
        first_token_at = None
        final = None
        async for output in self._outputs(request, prompt_ids, engine_id, delta=False):
            if first_token_at is None and output.outputs[0].token_ids:
                first_token_at = time.perf_counter()
            final = output
        done = time.perf_counter()
        if final is None:  # vLLM yields at least once per request; an empty stream is a bug
            raise ServiceUnavailable("the vLLM engine returned no output")
        completion = final.outputs[0]
        return shaping.answer(
            self.settings.model_id,
            request_id,
            list(final.prompt_token_ids or prompt_ids),
            completion.text,
            [int(i) for i in completion.token_ids],
            completion.finish_reason,
            (received, first_token_at, done),
        )

    async def _stream(
        self, request: GenerateRequest, prompt_ids: list[int]
    ) -> AsyncIterator[bytes]:
        """SSE frames: `prompt`, `token` per output token, then `done` (the blocking answer) or
        `error`.
        The frames of one vLLM output (several tokens when we fell behind) go out as one write."""
        received = time.perf_counter()
        request_id, engine_id = shaping.request_ids(request)
        texts = TokenTexts(self.tokenizer, prompt_ids)
        tokens = [self.tokenizer.decode([i], skip_special_tokens=False) for i in prompt_ids]
        yield sse.frame(
            "prompt",
            PromptEvent(
                request_id=request_id,
                model_id=self.settings.model_id,
                prompt_token_ids=prompt_ids,
                tokens=tokens,
            ),
        )
        first_token_at, finish_reason = None, None
        output_ids: list[int] = []
        pieces: list[str] = []
        try:
            async for output in self._outputs(request, prompt_ids, engine_id, delta=True):
                completion = output.outputs[0]
                new_ids = [int(i) for i in completion.token_ids]
                if new_ids and first_token_at is None:
                    first_token_at = time.perf_counter()
                frames = []
                for token_id, text in zip(
                    new_ids, texts.split(new_ids, completion.text), strict=True
                ):
                    event = TokenEvent(step=len(output_ids), token_id=token_id, text=text)
                    frames.append(sse.frame("token", event))
                    output_ids.append(token_id)
                    pieces.append(text)
                finish_reason = completion.finish_reason or finish_reason
                if frames:
                    yield b"".join(frames)
        except ApiError as exc:
            yield sse.frame("error", ErrorResponse(error=exc.to_info()))
            return
        clock = (received, first_token_at, time.perf_counter())
        answer = shaping.answer(
            self.settings.model_id,
            request_id,
            prompt_ids,
            "".join(pieces),
            output_ids,
            finish_reason,
            clock,
        )
        yield sse.frame("done", answer)

    async def generate(self, request: GenerateRequest) -> GenerateResponse:
        prompt_ids = await self._prepare(request)
        return await self._run(request, prompt_ids)

    async def open_stream(self, request: GenerateRequest) -> AsyncIterator[bytes]:
        """Checks the request now (its errors are plain HTTP answers), then streams."""
        prompt_ids = await self._prepare(request)
        return self._stream(request, prompt_ids)

    async def generate_batch(self, batch: BatchRequest) -> BatchResponse:
        """All requests go to the engine at once (continuous batching); answers keep order."""
        if len(batch.requests) > self.settings.max_batch_requests:
            raise InvalidRequest(
                f"batch of {len(batch.requests)} requests exceeds the bound of "
                f"{self.settings.max_batch_requests}",
                code="batch_too_large",
            )
        if any(r.stream for r in batch.requests):
            raise InvalidRequest("a batch does not stream", code="stream_not_supported")
        # Cheap bounds of every request before any tokenization, then every prompt's length
        # before any request reaches the engine.
        for i, r in enumerate(batch.requests):
            self.check_request(r, where=f"requests[{i}]: ")
        prompts = [
            await self._prepare(r, where=f"requests[{i}]: ") for i, r in enumerate(batch.requests)
        ]
        tasks = [
            asyncio.ensure_future(self._run(r, p))
            for r, p in zip(batch.requests, prompts, strict=True)
        ]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:  # one failed or the client left: abort the rest in the engine
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return BatchResponse(results=list(results))

    # -- health ------------------------------------------------------------------------------

    def in_flight(self) -> int:
        """Requests the engine has not finished (shows that aborted requests really left)."""
        return int(self.engine.output_processor.get_num_unfinished_requests())

    async def health(self) -> HealthResponse:
        if self.engine.errored:
            raise ServiceUnavailable("the vLLM engine has failed")
        try:
            await self.engine.check_health()
        except Exception as exc:  # any failure of the engine process means not ready
            raise ServiceUnavailable(f"the vLLM engine is unhealthy: {exc}") from exc
        return HealthResponse(
            status="ok",
            model_id=self.settings.model_id,
            backend="vllm",
            device=self.device,
            max_model_len=self.settings.max_model_len,
            in_flight=self.in_flight(),
            aborted=self.aborted,
        )
