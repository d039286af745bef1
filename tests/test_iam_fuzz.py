"""Property test: generated requests against every IAM operation, through nginx.

Schemathesis derives valid and invalid requests from the IAM service's own
OpenAPI document (built from the app, no server needed to load it). Whatever it
sends, the answer is never a 5xx and every error is the JSON error shape.
Each request comes from a fresh loopback address, so nginx's login limit (per
address) neither turns most answers into 429 nor starves other tests.
"""

from __future__ import annotations

import itertools
import json

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from requests.adapters import HTTPAdapter
from schemathesis import GenerationMode

from services.iam.app import app as iam_app

schema = schemathesis.openapi.from_dict(iam_app.openapi_schema.to_schema())
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=20
)
_addresses = itertools.count()


# ./dev test runs this module in its 'alone' phase (infra/stack/cli.py, PHASES):
# schemathesis gives every API operation a test of the same node id,
# which pytest-xdist would report once.
pytestmark = pytest.mark.alone


class _FromAddress(HTTPAdapter):
    """requests adapter whose connections leave from one source address."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs["source_address"] = (self.address, 0)
        return super().init_poolmanager(*args, **kwargs)


def _session() -> requests.Session:
    n = next(_addresses)
    s = requests.Session()
    adapter = _FromAddress(f"127.30.{n // 250 % 250}.{n % 250 + 1}")
    s.mount("http://", adapter)
    return s


@pytest.mark.stack
@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_iam_never_answers_5xx_and_errors_are_json(case, base_url: str) -> None:  # type: ignore[no-untyped-def]
    with _session() as session:
        response = case.call(base_url=base_url, session=session, timeout=10)
    assert response.status_code < 500, (case.method, case.path, case.body, response.text)
    if response.status_code >= 400:
        content_type = response.headers.get("content-type", [""])[0]  # header -> list of values
        assert content_type.startswith("application/json"), response.text
        body = json.loads(response.text)
        assert body["status_code"] == response.status_code and body["detail"], body
