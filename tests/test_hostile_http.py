"""Property-based tests over every HTTP endpoint, through nginx: schemathesis
generates requests from each service's generated OpenAPI document (valid and
invalid ones, as a host, as a player and anonymously). No request may cause a
5xx, and every error must be the JSON error shape ``{status_code, detail}``.

Examples are bounded (a few per operation and mode) so the whole module stays
well under a minute.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.chaos.secrets import remember_tokens

pytestmark = pytest.mark.stack

SERVICES = ["iam", "quiz", "leaderboard"]
EXAMPLES = {GenerationMode.POSITIVE: 12, GenerationMode.NEGATIVE: 12}


@pytest.fixture(scope="module")
def identities(api) -> dict[str, dict[str, str]]:
    """Headers of a host, a player and nobody; plus a real session for path ids."""
    host = api.host()
    player = api.guest()
    remember_tokens(host)
    remember_tokens(player)
    return {
        "host": api.auth(host),
        "player": api.auth(player),
        "anonymous": {},
    }


@pytest.fixture(scope="module")
def real_ids(api, http, identities) -> dict[str, str]:
    """A quiz and a session that exist, so generated calls also reach deep code."""
    quiz = {
        "title": "fuzz target",
        "public": True,
        "questions": [{"text": "q?", "choices": ["a", "b"], "answer": 1, "time_limit_s": 5}],
    }
    r = http.post("/api/quiz/quizzes", json=quiz, headers=identities["host"])
    assert r.status_code == 201, r.text
    quiz_id = r.json()["id"]
    r = http.post(
        "/api/quiz/sessions", json={"quiz_id": quiz_id, "mode": "live"}, headers=identities["host"]
    )
    assert r.status_code == 201, r.text
    return {"quiz_id": quiz_id, "session_id": r.json()["id"]}


def _problem(case: Any, response: requests.Response) -> str | None:
    """Why this response breaks the contract, or None."""
    where = f"{case.method} {case.formatted_path} {response.status_code}"
    if response.status_code >= 500:
        return f"{where}: server error {response.text[:200]}"
    if response.status_code >= 400:
        if not response.headers.get("content-type", "").startswith("application/json"):
            return f"{where}: error is not JSON: {response.text[:120]!r}"
        try:
            body = response.json()
        except ValueError:
            return f"{where}: error body is not valid JSON: {response.text[:120]!r}"
        if not (
            isinstance(body, dict)
            and body.get("status_code") == response.status_code
            and body.get("detail")
        ):
            return f"{where}: error shape {body!r:.200}"
    return None


def _path_overrides(op: Any, ids: dict[str, str]) -> dict[str, str]:
    names = {p.name for p in op.path_parameters}
    fixed = {}
    for name in names:
        if name in ("id", "session_id"):
            fixed[name] = ids["session_id"]
        elif name == "quiz_id":
            fixed[name] = ids["quiz_id"]
    return fixed


@pytest.mark.parametrize("service", SERVICES)
def test_generated_requests_never_cause_5xx_and_errors_are_json(
    service: str, base_url: str, identities: dict, real_ids: dict
) -> None:
    schema = schemathesis.openapi.from_url(f"{base_url}/api/{service}/schema/openapi.json")
    session = requests.Session()
    problems: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        op = result.ok()
        operations += 1
        strategies = []
        for mode, n in EXAMPLES.items():
            strategies.append((op.as_strategy(generation_mode=mode), n))
            fixed = _path_overrides(op, real_ids)
            if fixed:
                strategies.append((op.as_strategy(generation_mode=mode, path_parameters=fixed), n))
        for strategy, n in strategies:

            @settings(
                max_examples=n,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy, who=st.sampled_from(sorted(identities)))
            def run(case: Any, who: str) -> None:
                response = case.call(
                    base_url=base_url,
                    session=session,
                    headers=identities[who],
                    timeout=10,
                )
                problem = _problem(case, response)
                if problem:
                    problems.append(f"[{who}] {problem}")

            run()
    if service == "iam":
        time.sleep(4)  # login/register share a 5 r/s limit: let it refill for later tests
    assert operations, f"no operations in the {service} OpenAPI document"
    assert not problems, "\n".join(sorted(set(problems))[:30])
