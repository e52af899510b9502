"""The pure derivations and the packed format, against brute force on generated timelines."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.activations import derive, packed
from tests.backend.activations.test_activations import assert_features, brute_rows, brute_top


@st.composite
def timelines(draw):
    n = draw(st.integers(0, 40))
    output_start = draw(st.integers(0, n))
    entries = []
    for p in range(n):
        k = draw(st.integers(0, 6))
        fids = draw(st.lists(st.integers(0, 12), min_size=k, max_size=k, unique=True))
        # Few distinct values: ties in max, mean and the limit cut are common.
        acts = sorted(
            draw(st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.5]), min_size=k, max_size=k)),
            reverse=True,
        )
        entries.append(
            {
                "position": p,
                "token_id": draw(st.integers(0, 128_255)),
                "token": f"t{p}",
                "segment": "prompt" if p < output_start else "output",
                "special": draw(st.booleans()),
                "features": [
                    {"feature_id": f, "activation": a} for f, a in zip(fids, acts, strict=True)
                ],
            }
        )
    return entries, output_start


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    data=timelines(),
    segment=st.sampled_from(["all", "prompt", "output"]),
    include_special=st.booleans(),
    limit=st.integers(1, 20),
)
def test_top_features_brute_force(data, segment, include_special, limit):
    entries, _ = data
    timeline, _ = packed.from_entries(entries)
    timeline = packed.unpack(packed.pack(timeline))  # through the stored form
    got = derive.top_features(
        timeline, segment=segment, include_special=include_special, limit=limit
    )
    assert_features(
        got, brute_top(entries, segment=segment, include_special=include_special)[:limit]
    )


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    data=timelines(),
    feature_id=st.none() | st.integers(0, 12),
    token_start=st.none() | st.integers(0, 45),
    token_end=st.none() | st.integers(0, 45),
    rank_max=st.none() | st.integers(1, 6),
    segment=st.sampled_from(["all", "prompt", "output"]),
    limit=st.integers(1, 50),
    offset=st.integers(0, 60),
)
def test_rows_brute_force(
    data, feature_id, token_start, token_end, rank_max, segment, limit, offset
):
    entries, output_start = data
    timeline, tokens = packed.from_entries(entries)
    timeline = packed.unpack(packed.pack(timeline))
    flt = derive.RowFilter(feature_id, token_start, token_end, rank_max, segment, limit, offset)
    total, rows = derive.rows(timeline, tokens, output_start, flt)
    expected = brute_rows(
        entries,
        output_start,
        feature_id=feature_id,
        token_start=token_start,
        token_end=token_end,
        rank_max=rank_max,
        segment=segment,
    )
    assert total == len(expected)
    assert rows == expected[offset : offset + limit]


@pytest.mark.parametrize(
    "entries",
    [
        [{"position": 1, "token_id": 1, "features": []}],
        [{"position": 0, "token_id": "x", "features": []}],
        [{"position": 0, "token_id": 1, "features": [{"feature_id": 1.5, "activation": 1}]}],
        [{"position": 0, "token_id": 1, "features": [{"feature_id": -1, "activation": 1}]}],
        [{"position": 0, "token_id": 1, "features": [{"feature_id": 1, "activation": "a"}]}],
        [{"position": 0, "token_id": 1, "features": [{"feature_id": 1}]}],
        [{"position": 0, "token_id": 1, "segment": "middle", "features": []}],
        [{"position": 0, "token_id": 1}],
        ["not an entry"],
    ],
)
def test_malformed_timelines_rejected(entries):
    with pytest.raises(packed.TimelineShapeError):
        packed.from_entries(entries)
