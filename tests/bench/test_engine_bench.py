"""bench.engine's pure parts: the sampling modes match the API's defaults and make valid
requests, and each row's ratios are taken against the right baseline."""

from __future__ import annotations

from bench import engine as bench_engine
from bench import engine_http
from engine.generation.protocol import GenerateRequest


def test_modes_use_the_apis_defaults():
    defaults = GenerateRequest(prompt="x")
    assert engine_http.MODES["defaults"] == {
        "temperature": defaults.temperature,
        "top_p": defaults.top_p,
    }
    assert engine_http.MODES["greedy"]["temperature"] == 0
    assert engine_http.MODES["top-k"]["top_p"] == 1.0


def test_requests_in_a_mode_are_valid_api_bodies():
    requests = bench_engine.workload(5, seed=3, quick=True)
    for mode in engine_http.MODES:
        for body in engine_http.in_mode(requests, mode):
            assert GenerateRequest(**body).temperature == engine_http.MODES[mode]["temperature"]
            assert "seed" not in body


def test_ratios_against_greedy_at_the_same_level_and_offline_of_the_same_mode():
    def row(transport, level, mode, tps):
        return {
            "transport": transport,
            "concurrency": level,
            "mode": mode,
            "output_tokens_per_s": tps,
        }

    rows = [
        row("http", 8, "greedy", 100.0),
        row("http", 8, "defaults", 80.0),
        row("offline", 8, "greedy", 200.0),
        row("offline", 8, "defaults", 100.0),
        row("http", 1, "defaults", 10.0),  # no greedy at that level
    ]
    bench_engine.add_ratios(rows)
    assert [r["vs_greedy"] for r in rows] == [1.0, 0.8, 1.0, 0.5, None]
    assert [r["vs_offline"] for r in rows] == [0.5, 0.8, None, None, None]


def test_steering_rows_steer_none_one_in_32_and_all(tiny_model_dir):
    from bench import engine_steer

    steer = engine_steer.steer_for(str(tiny_model_dir), 0)
    body = GenerateRequest(prompt="x", steer=steer)
    assert body.steer is not None and body.steer[0].layer == 16
    assert [sum(map(pick, range(64))) for pick in engine_steer.MIXES.values()] == [0, 2, 64]
