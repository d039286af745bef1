"""The contracts: generated documents are current, and the Structs enforce the protocol.

No stack needed: the apps are imported (never started) to build their OpenAPI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from contracts import events as ev
from contracts import http
from infra.schemas import DOCS, SERVICES, main, render, stale, write
from tests.support.game import score_change


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return render()


# --------------------------------------------------------------------------- generated docs


def test_generated_documents_are_up_to_date() -> None:
    assert stale() == [], "docs/ is out of date: run `just schemas` and commit docs/"


def test_check_fails_on_a_stale_or_missing_document(tmp_path: Path) -> None:
    assert write(tmp_path)  # everything is new in an empty folder
    assert main(["check", "--dir", str(tmp_path)]) == 0
    events_file = tmp_path / "events.json"
    events_file.write_text(events_file.read_text().replace("SCORE_CHANGE", "SCORE_CHANGED"))
    (tmp_path / "openapi-iam.json").unlink()
    assert sorted(stale(tmp_path)) == ["events.json", "openapi-iam.json"]
    assert main(["check", "--dir", str(tmp_path)]) == 1


def test_rendering_is_deterministic(rendered: dict[str, str]) -> None:
    assert render() == rendered


@pytest.mark.parametrize("service", SERVICES)
def test_openapi_documents_describe_their_service(rendered: dict[str, str], service: str) -> None:
    doc = json.loads(rendered[f"openapi-{service}.json"])
    assert doc["openapi"].startswith("3.")
    assert all(path.startswith(f"/api/{service}/") for path in doc["paths"])
    _assert_refs_resolve(doc)


def test_iam_openapi_documents_its_calls_and_errors(rendered: dict[str, str]) -> None:
    paths = json.loads(rendered["openapi-iam.json"])["paths"]
    for path in ("guests", "users", "token", "token/refresh"):
        assert "post" in paths[f"/api/iam/{path}"]
    assert "get" in paths["/api/iam/jwks"]
    assert "409" in paths["/api/iam/users"]["post"]["responses"]
    assert "401" in paths["/api/iam/token"]["post"]["responses"]
    assert "401" in paths["/api/iam/token/refresh"]["post"]["responses"]


def test_events_document_lists_every_topic_and_socket_event(rendered: dict[str, str]) -> None:
    doc = json.loads(rendered["events.json"])
    assert doc["asyncapi"].startswith("3.")
    addresses = {c["address"] for c in doc["channels"].values()}
    assert {"SCORE_CHANGE", "TOP_10", "session:{session_id}"} <= addresses
    names = {m["name"] for m in doc["components"]["messages"].values()}
    assert set(ev.SOCKET_EVENTS) | {"join", "leave", "ScoreChange", "Top10"} <= names
    schemas = doc["components"]["schemas"]
    assert "schema_version" in schemas["ScoreChange"]["properties"]
    assert "schema_version" in schemas["Top10"]["properties"]
    _assert_refs_resolve(doc)


def test_index_links_every_document(rendered: dict[str, str]) -> None:
    page = rendered["index.html"]
    for name in rendered:
        if name != "index.html":
            assert f'href="{name}"' in page
    assert 'href="auth.md"' in page and (DOCS / "auth.md").exists()
    assert "/api/iam/token/refresh" in page


def _assert_refs_resolve(doc: dict[str, Any]) -> None:
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                target: Any = doc
                for part in ref.removeprefix("#/").split("/"):
                    assert isinstance(target, dict) and part in target, f"dangling $ref {ref}"
                    target = target[part]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)


# --------------------------------------------------------------------------- Structs


def decode(raw: object, typ: type) -> Any:
    return msgspec.json.decode(json.dumps(raw).encode(), type=typ)


def error_of(raw: object, typ: type) -> str:
    with pytest.raises(msgspec.ValidationError) as e:
        decode(raw, typ)
    return str(e.value)


@pytest.mark.parametrize(
    ("typ", "body"),
    [
        (http.GuestIn, {"nickname": "ann"}),
        (http.UserIn, {"username": "host_1", "password": "long enough"}),
        (http.LoginIn, {"username": "host_1", "password": "x"}),
        (http.RefreshIn, {"refresh_token": "abc"}),
        (http.AnswerIn, {"question_id": "q1", "choice": 0}),
        (http.JoinIn, {"code": "ABC123"}),
        (http.SessionIn, {"quiz_id": "q", "mode": "live"}),
    ],
)
def test_request_bodies_refuse_unknown_fields(typ: type, body: dict) -> None:
    decode(body, typ)
    assert "unknown field `role`" in error_of({**body, "role": "host"}, typ)


@pytest.mark.parametrize(
    "nickname",
    ["", "x" * 25, "a\x00b", "a\x1fb", "a\x7fb", "line\nbreak"],
)
def test_nickname_rules(nickname: str) -> None:
    assert "$.nickname" in error_of({"nickname": nickname}, http.GuestIn)


@pytest.mark.parametrize("nickname", ["a", "x" * 24, "Zoë 🎉", "with space"])
def test_good_nicknames(nickname: str) -> None:
    assert decode({"nickname": nickname}, http.GuestIn).nickname == nickname


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "ab", "password": "long enough"}, "username"),
        ({"username": "a b c", "password": "long enough"}, "username"),
        ({"username": "host_1", "password": "short"}, "password"),
        ({"username": "host_1", "password": "long enough", "nickname": ""}, "nickname"),
        ({"password": "long enough"}, "username"),
    ],
)
def test_user_rules(body: dict, field: str) -> None:
    assert f"`{field}`" in error_of(body, http.UserIn) or f"$.{field}" in error_of(
        body, http.UserIn
    )


def test_wrong_types_are_refused_not_coerced() -> None:
    assert "$.choice" in error_of({"question_id": "q", "choice": "1"}, http.AnswerIn)
    assert "$.nickname" in error_of({"nickname": 5}, http.GuestIn)


def test_question_rules() -> None:
    q = {"text": "2+2?", "choices": ["3", "4"], "answer": 1}
    parsed = decode(q, http.QuestionIn)
    assert (parsed.time_limit_s, parsed.points) == (20, 1000)  # protocol defaults
    assert "$.choices" in error_of({**q, "choices": ["only one"]}, http.QuestionIn)
    assert "$.answer" in error_of({**q, "answer": 6}, http.QuestionIn)
    assert "$.questions" in error_of({"title": "t", "questions": []}, http.QuizIn)


def test_token_pair_shape_follows_the_protocol() -> None:
    pair = http.TokenPair(
        access_token="a",
        refresh_token="r",
        expires_in=900,
        user=http.UserOut(id="u", nickname="n", role="player"),
    )
    out = msgspec.to_builtins(pair)
    assert set(out) >= {"access_token", "refresh_token", "token_type", "expires_in", "user"}
    assert out["token_type"] == "Bearer"
    assert set(out["user"]) >= {"id", "nickname", "role"}


def test_kafka_events_round_trip_with_their_schema_version() -> None:
    change = score_change(points=900, total=1900)
    raw = msgspec.json.encode(change)
    assert json.loads(raw)["schema_version"] == ev.SCHEMA_VERSION
    assert ev.decode_score_change(raw) == change
    with pytest.raises(msgspec.ValidationError):
        ev.decode_score_change(b'{"session_id": "s"}')
    top = ev.Top10(
        session_id="s",
        version=3,
        players=1,
        produced_ms=2,
        entries=[http.LeaderboardEntry(rank=1, user_id="u", nickname="n", score=1900)],
    )
    assert ev.decode_top10(msgspec.json.encode(top)) == top


def test_socket_payloads_are_plain_builtins() -> None:
    board = ev.RoomLeaderboard(session_id="s", version=1, players=0, entries=[])
    assert ev.to_payload(board) == {"session_id": "s", "version": 1, "players": 0, "entries": []}
    # Clients may send extra keys on join/leave; only session_id matters.
    assert decode({"session_id": "s", "extra": 1}, ev.JoinRoom).session_id == "s"


def test_error_body_matches_what_services_and_nginx_send() -> None:
    body = decode({"status_code": 429, "detail": "Too many requests, retry later"}, http.ErrorBody)
    assert body.extra is None
