"""Schemathesis fuzz of the published OpenAPI schema: no input may produce a 5xx.

Upstreams are the healthy stubs, so any 5xx would be the backend's own fault (except the
documented 501 of feature-deltas). Bounded: a fixed
number of examples per operation, derandomized, a few hundred requests in total. (Driven
directly with hypothesis: schemathesis' pytest plugin does not run under pytest 9.)
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

EXAMPLES_PER_OPERATION = 15  # per mode: valid inputs, then schema-violating ones


def _fuzz(operation, mode, base_url: str, failures: list[str], counter: list[int]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case):
        counter[0] += 1
        response = case.call(base_url=base_url, timeout=30)
        expected_501 = response.status_code == 501 and operation.path.endswith("/feature-deltas")
        if response.status_code >= 500 and not expected_501:
            failures.append(
                f"{operation.label}: {response.status_code} {response.text[:300]}\n"
                f"  {case.as_curl_command()}"
            )

    try:
        check()
    except Unsatisfiable:
        # Negative mode on an operation without parameters: nothing can violate the schema.
        assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label


def test_no_server_errors(backend_url):
    schema = schemathesis.openapi.from_url(backend_url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    failures: list[str] = []
    counter = [0]
    for operation in operations:
        for mode in schemathesis.GenerationMode:
            _fuzz(operation, mode, backend_url, failures, counter)
    assert counter[0] >= 10 * len(operations)
    assert not failures, "\n".join(failures[:10])
