"""Backend `run` against the real vLLM engine on the tiny model, without the SAE
(`collect_activations: false`): the stored run carries exactly the engine's tokens and model,
greedy and seeded (the backend's seeded run, blocking and streamed, against the engine's own
/generate with the same seed and settings)."""

from __future__ import annotations

import httpx
import pytest
from transformers import AutoTokenizer

from backend.app import create_app
from backend.settings import Settings
from common import sse
from tests.support.databases import create_database
from tests.support.servers import SERVICE_AUTH, SERVICE_TOKEN, serve_app

pytestmark = pytest.mark.vllm

PROMPT = "Count from one to five."


@pytest.fixture(scope="module")
async def saeless_backend_url(pg_uri, engine_url, tiny_model_dir):
    """The backend with no SAE service: no default SAE, an address where nothing listens."""
    database_url = create_database(pg_uri, prefix="e2e_engine", migrate=True)
    settings = Settings(
        database_url=database_url,
        playground_activations_hf_url=engine_url,
        # No SAE call is expected: an unreachable address makes any such call fail loudly.
        playground_sae_url="http://127.0.0.1:9",
        playground_default_model_id=str(tiny_model_dir),
        playground_service_token=SERVICE_TOKEN,
    )
    with serve_app(create_app(settings)) as url:
        yield url


def test_run_without_activations_stores_engine_tokens(
    saeless_backend_url, engine_url, tiny_model_dir
):
    body = {"prompt": PROMPT, "max_tokens": 10, "temperature": 0.0, "collect_activations": False}
    response = httpx.post(
        saeless_backend_url + "/playground/activations/run", json=body, timeout=300
    )
    assert response.status_code == 200, response.text
    run = response.json()

    direct = httpx.post(
        engine_url + "/generate",
        json={"prompt": PROMPT, "max_tokens": 10, "temperature": 0.0},
        headers=SERVICE_AUTH,
        timeout=120,
    ).json()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    expected_prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
    )

    output = run["output"]
    assert run["model_id"] == direct["model_id"] == str(tiny_model_dir)
    assert output["prompt_token_ids"] == expected_prompt
    assert output["token_ids"] == direct["output_token_ids"]  # greedy: the same answer
    assert len(output["token_ids"]) == 10 and output["finish_reason"] == "length"
    assert output["text"] == direct["output_text"]
    assert run["preview"] is None

    stored = httpx.get(saeless_backend_url + f"/playground/activations/{run['request_id']}").json()
    assert stored["model_id"] == run["model_id"]
    assert stored["prompt"] == PROMPT
    assert stored["output"] == output

    listed = httpx.get(
        saeless_backend_url + "/playground/activations/runs", params={"limit": 5}
    ).json()
    assert run["request_id"] in str(listed)


# Sampled with a seed: the settings spelled out on both sides (not left to either's defaults).
SEEDED = {"prompt": "Tell me about the sea.", "max_tokens": 16, "temperature": 0.9,
          "top_p": 0.95, "top_k": 0, "seed": 4242}  # fmt: skip


def test_seeded_run_gives_the_engines_seeded_tokens(backend_url, engine_url):
    run = "/playground/activations/run"
    body = {**SEEDED, "collect_activations": False}
    blocking = httpx.post(backend_url + run, json=body, timeout=300)
    assert blocking.status_code == 200, blocking.text
    with httpx.stream(
        "POST", backend_url + run, json=body, headers={"accept": "text/event-stream"}, timeout=300
    ) as response:
        assert response.status_code == 200, response.read()
        events = list(sse.parse(response.iter_lines()))
    assert events[-1][0] == "done", events[-1]
    streamed = events[-1][1]

    direct = httpx.post(engine_url + "/generate", json=SEEDED, headers=SERVICE_AUTH, timeout=120)
    assert direct.status_code == 200, direct.text
    want = direct.json()["output_token_ids"]
    assert want
    assert blocking.json()["output"]["token_ids"] == want
    assert streamed["output"]["token_ids"] == want
    assert [data["token_id"] for name, data in events if name == "token"] == want
    stored = httpx.get(f"{backend_url}/playground/activations/{blocking.json()['request_id']}")
    assert stored.json()["output"]["token_ids"] == want
    # Another seed is another answer: the equality above is the seed's doing.
    other = httpx.post(
        engine_url + "/generate", json={**SEEDED, "seed": 4243}, headers=SERVICE_AUTH, timeout=120
    )
    assert other.json()["output_token_ids"] != want
