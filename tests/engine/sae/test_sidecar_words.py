"""The words of a feature's example windows (what label search matches besides the label):
tokens joined into text first, so a word split across tokens is one word."""

from __future__ import annotations

import json

from engine.sae.sidecars import EXAMPLES_FORMAT, context_words, read_context_words


def test_words_of_the_windows_joined_lower_case_distinct():
    examples = [
        {"tokens": [" the", " S", "ea", " and", " the", " sky", "."]},
        {"tokens": ["Paris", " is", " the", " capital", " of", " France", " 42"]},
    ]
    assert context_words(examples) == "the sea and sky paris is capital of france 42"
    assert context_words([]) == ""


def test_every_feature_of_an_examples_file(tmp_path):
    path = tmp_path / "feature_examples.jsonl"
    lines = [
        {"format": EXAMPLES_FORMAT, "context_before": 8, "context_after": 3},
        {"feature_id": 2, "examples": [{"tokens": [" blue", " sea"]}]},
        {"feature_id": 5, "examples": [{"tokens": [".", "!"]}]},  # no words: left out
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert read_context_words(path) == {2: "blue sea"}
    assert read_context_words(tmp_path / "missing.jsonl") == {}
