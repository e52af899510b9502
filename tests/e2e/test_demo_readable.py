"""The readable demo end to end, real parts only: the vLLM CPU engine on SmolLM2-135M-Instruct
(built by `build-demo` from PyPI) answers a greedy "What is the capital of France?" with Paris,
and the SAE service computes its timeline with the trained demo SAE, whose labels name the
features that fire.

Isolation: marker ``demo_e2e``. tests/conftest.py deselects these tests unless the marker
expression names it, so they never run in the main session beside its tiny-model engine (two
vLLM engines do not fit 2 cores); `./dev test` runs them afterwards as
``pytest -m demo_e2e tests/e2e/test_demo_readable.py``.
"""

from __future__ import annotations

import httpx
import pytest

from common.defaults import DEMO_MODEL_ID, DEMO_TRAINED_SAE_ID, DEMO_TRAINED_SAE_LAYER
from tests.conftest import ARTIFACTS
from tests.support.servers import serve_subcommand

pytestmark = pytest.mark.demo_e2e

QUESTION = "What is the capital of France?"
PLAIN_TEXTS = [QUESTION, "Name three colours.", "  spaces\tand tabs\n", "déjà vu 🙂"]


@pytest.fixture(scope="module")
def demo_trained_dir(demo_model_dir, tmp_path_factory):
    """What `up` serves (the committed SAE, copied by ensure_demo_sae) when the repo has one
    for this model build; else an SAE trained here on a small budget."""
    from engine.demo.corpus import CORPUS_NAME, fortunes_corpus
    from engine.demo.train_config import TrainConfig
    from engine.demo.train_sae import committed_sae_fits, ensure_demo_sae, train_sae
    from engine.demo.trainer import TrainSettings

    data_dir = ARTIFACTS / "demo-data"
    if committed_sae_fits(demo_model_dir):
        return ensure_demo_sae(demo_model_dir, data_dir)
    out = tmp_path_factory.mktemp("trained") / "demo-trained-l15"
    config = TrainConfig(
        texts=fortunes_corpus(data_dir / "cache/wheels"),
        corpus_name=CORPUS_NAME,
        tokens=16_000,
        settings=TrainSettings(d_sae=512, k=16, epochs=4, batch_size=512),
    )
    train_sae(demo_model_dir, DEMO_TRAINED_SAE_LAYER, out, config)
    return out


@pytest.fixture(scope="module")
def demo_engine_url(demo_model_dir, artifacts_dir):
    args = ["engine", "--model", str(demo_model_dir), "--served-model-name", DEMO_MODEL_ID]
    with serve_subcommand(
        [*args, "--max-model-len", "2048"], log_path=artifacts_dir / "demo-engine.log"
    ) as url:
        yield url


@pytest.fixture(scope="module")
def demo_sae_url(demo_model_dir, demo_trained_dir, artifacts_dir):
    args = ["sae", "--model", str(demo_model_dir), "--sae-dir", str(demo_trained_dir)]
    with serve_subcommand(
        [*args, "--model-id", DEMO_MODEL_ID],
        log_path=artifacts_dir / "demo-sae.log",
        env={"SAE_SERVICE_TORCH_THREADS": "1"},
    ) as url:
        yield url


@pytest.fixture(scope="module")
def reference(demo_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(demo_model_dir)


def chat_ids(tokenizer, text: str) -> list[int]:
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
    )
    return list(ids)


@pytest.fixture(scope="module")
def answer(demo_engine_url) -> dict:
    body = {"prompt": QUESTION, "max_tokens": 48, "temperature": 0.0, "seed": 0}
    response = httpx.post(demo_engine_url + "/generate", json=body, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()


def test_greedy_answer_names_paris(answer, reference):
    assert answer["model_id"] == DEMO_MODEL_ID
    assert "Paris" in answer["output_text"], answer["output_text"]
    assert answer["prompt_token_ids"] == chat_ids(reference, QUESTION)  # template parity
    assert answer["finish_reason"] == "stop"  # <|im_end|>, the folder's EOS


def test_tokenize_equals_the_folders_chat_template(demo_engine_url, reference):
    for text in PLAIN_TEXTS:
        response = httpx.post(demo_engine_url + "/tokenize", json={"text": text, "chat": True})
        assert response.status_code == 200, response.text
        assert response.json()["token_ids"] == chat_ids(reference, text)


def test_timeline_comes_from_the_trained_sae_with_labels(answer, demo_sae_url):
    prompt, output = answer["prompt_token_ids"], answer["output_token_ids"]
    body = {"token_ids": prompt + output, "top_k": 8, "output_start": len(prompt)}
    response = httpx.post(demo_sae_url + "/extract_features", json=body, timeout=120)
    assert response.status_code == 200, response.text
    data = response.json()
    assert (data["sae_id"], data["layer"]) == (DEMO_TRAINED_SAE_ID, DEMO_TRAINED_SAE_LAYER)
    timeline = data["feature_timeline"]
    assert [e["token_id"] for e in timeline] == prompt + output
    labels = httpx.get(
        f"{demo_sae_url}/saes/{DEMO_TRAINED_SAE_ID}/{DEMO_TRAINED_SAE_LAYER}/labels"
    ).json()["labels"]
    paris = [e for e in timeline if e["segment"] == "output" and e["token"].strip() == "Paris"]
    assert paris, [e["token"] for e in timeline]
    top = [f["feature_id"] for f in paris[0]["features"]]
    assert len(top) == 8
    named = [labels[str(f)] for f in top if str(f) in labels]
    assert named, f"no labelled feature among {top} at 'Paris'"
    print("features at 'Paris':", named)  # shown with -s: what the page will show


@pytest.fixture(scope="module")
def demo_backend_url(pg_uri, demo_engine_url, demo_sae_url):
    """The backend over the readable demo's services, as `up` runs it (its default model is
    the engine's served name, its default SAE the trained one)."""
    from backend.app import create_app
    from tests.backend.page.conftest import settings_for
    from tests.support.databases import create_database
    from tests.support.servers import serve_app

    settings = settings_for(
        create_database(pg_uri, prefix="demo", migrate=True), demo_engine_url, demo_sae_url
    ).model_copy(
        update={
            "playground_default_model_id": DEMO_MODEL_ID,
            "playground_default_sae_id": DEMO_TRAINED_SAE_ID,
            "playground_default_sae_layer": DEMO_TRAINED_SAE_LAYER,
        }
    )
    with serve_app(create_app(settings)) as url:
        yield url


@pytest.mark.browser
def test_page_shows_the_models_name_and_the_trained_saes_labels(page, demo_backend_url):
    """In the browser: the model field names SmolLM2, the SAE is listed as a labelled demo, a
    greedy run answers Paris, and its top features are shown with their labels."""
    from tests.backend.page.test_page import open_page, run_in_page

    open_page(page, demo_backend_url)
    assert page.input_value("#model-id") == DEMO_MODEL_ID
    option = page.locator(f"#sae-id option[value='{DEMO_TRAINED_SAE_ID}']")
    assert option.inner_text() == f"{DEMO_TRAINED_SAE_ID} (demo, labelled)"
    assert "trained here" in page.locator("#sae-note").inner_text()  # not "random weights"
    page.fill("#temperature", "0")
    run_in_page(page, QUESTION, max_tokens=24)
    assert "Paris" in page.locator("#tokens").inner_text()
    labels = [t for t in page.locator("#top-features tbody td.label-text").all_inner_texts() if t]
    assert labels, "no labelled feature among the run's top features"
    assert page.problems == []
