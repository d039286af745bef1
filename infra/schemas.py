"""Generated protocol documents in ``docs/``, from the apps and the Structs.

    python -m infra.schemas docs    write the documents (``just schemas``)
    python -m infra.schemas check   exit 1 when a document is out of date

What is written:

- ``docs/openapi-<service>.json``: each Litestar app's OpenAPI document (the
  apps are imported, never run: no server or database is needed);
- ``docs/events.json``: an AsyncAPI 3.0 style description of the Kafka topics
  and socket.io events, with the JSON Schema of every payload generated from
  ``contracts.events`` by ``msgspec.json.schema_components``;
- ``docs/index.html``: a plain page listing every endpoint and event, linking
  the documents above (nginx serves ``docs/`` at ``/docs/``).

Output is deterministic (sorted keys, fixed indentation), so ``check`` compares
bytes and a stale document fails the test suite until ``just schemas`` is run.
"""

from __future__ import annotations

import argparse
import html
import importlib
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from contracts import events as ev

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SERVICES = ("iam", "quiz", "leaderboard")
REF = "#/components/schemas/{name}"


def _json(doc: Any) -> str:
    """The canonical text of a document: builtins only, sorted keys, trailing newline."""
    plain = msgspec.to_builtins(doc, order="sorted")
    return json.dumps(plain, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- OpenAPI


def openapi(service: str) -> dict[str, Any]:
    """The OpenAPI document of ``services.<service>.app:app`` (imported, not started)."""
    with warnings.catch_warnings():
        # Importing an app may warn that no database is reachable: irrelevant here.
        warnings.simplefilter("ignore")
        module = importlib.import_module(f"services.{service}.app")
    return msgspec.to_builtins(module.app.openapi_schema.to_schema(), order="sorted")


# --------------------------------------------------------------------------- events

# A message: (name, Struct, direction); a channel: (id, address, description, messages).
# Kafka payloads carry ``schema_version``; socket.io payloads are what
# ``contracts.events.to_payload`` produces.
Message = tuple[str, type[msgspec.Struct], str]
Channel = tuple[str, str, str, list[Message]]

_KAFKA: list[Channel] = [
    (
        "scoreChange",
        "SCORE_CHANGE",
        "Kafka topic, key = session id. One event per accepted answer, produced from the "
        "quiz service's outbox after the answer is durable; read by the leaderboard "
        "consumer group.",
        [("ScoreChange", ev.ScoreChange, "quiz service -> leaderboard consumer")],
    ),
    (
        "top10",
        "TOP_10",
        "Kafka topic, compacted, key = session id. The latest top-10 snapshot of each "
        "session with its version, written by the leaderboard consumer.",
        [("Top10", ev.Top10, "leaderboard consumer -> topic (latest per session)")],
    ),
]


def _socket_channels() -> list[Channel]:
    to_room: list[Message] = [
        (name, struct, "server -> room") for name, struct in ev.SOCKET_EVENTS.items()
    ]
    from_client: list[Message] = [
        ("join", ev.JoinRoom, "client -> server"),
        ("join ack", ev.JoinAck, "server -> client (ack of join)"),
        ("join error ack", ev.ErrorAck, "server -> client (ack of join or leave)"),
        ("leave", ev.LeaveRoom, "client -> server"),
        ("token_expired", ev.TokenExpired, "server -> client (then disconnected)"),
    ]
    return [
        (
            "socketServer",
            "/socket.io/ (default namespace)",
            "socket.io events a client sends, with their acks. Connect with "
            "auth {token: <access_token>}; a missing, forged or expired token is refused.",
            from_client,
        ),
        (
            "sessionRoom",
            "session:{session_id}",
            "socket.io room of one quiz session: every joined player and the host get "
            "these events.",
            to_room,
        ),
    ]


def events() -> dict[str, Any]:
    """AsyncAPI 3.0 style description of the Kafka topics and socket.io events."""
    channels_spec: list[tuple[str, str, str, str, list[Message]]] = [
        (cid, addr, "kafka", desc, msgs) for cid, addr, desc, msgs in _KAFKA
    ]
    channels_spec += [
        (cid, addr, "socket.io", desc, msgs) for cid, addr, desc, msgs in _socket_channels()
    ]
    structs = sorted({m[1] for *_, msgs in channels_spec for m in msgs}, key=lambda t: t.__name__)
    _, components = msgspec.json.schema_components(structs, ref_template=REF)

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for cid, address, kind, description, msgs in channels_spec:
        channel_messages = {}
        for name, struct, direction in msgs:
            key = name.replace(" ", "_")
            messages[f"{cid}.{key}"] = {
                "name": name,
                "title": struct.__name__,
                "summary": (struct.__doc__ or "").strip().splitlines()[0] if struct.__doc__ else "",
                "payload": {"$ref": REF.format(name=struct.__name__)},
                "x-direction": direction,
            }
            channel_messages[key] = {"$ref": f"#/components/messages/{cid}.{key}"}
            action = "receive" if direction.startswith("client") else "send"
            operations[f"{cid}.{key}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{cid}"},
                "messages": [{"$ref": f"#/channels/{cid}/messages/{key}"}],
                "summary": f"{direction}: {name}",
            }
        channels[cid] = {
            "address": address,
            "description": description,
            "messages": channel_messages,
            "x-transport": kind,
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "quizrt events",
            "version": str(ev.SCHEMA_VERSION),
            "description": "Kafka topics between services and socket.io events to clients. "
            "Generated from contracts/events.py by `just schemas`; do not edit.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": components},
    }


# --------------------------------------------------------------------------- index.html


def _schema_name(ref_holder: Any) -> str:
    """The component name a content/schema object points at, or a short type."""
    if not isinstance(ref_holder, dict):
        return ""
    if "$ref" in ref_holder:
        return str(ref_holder["$ref"]).rsplit("/", 1)[-1]
    if "items" in ref_holder:
        inner = _schema_name(ref_holder["items"])
        return f"[{inner}]" if inner else "array"
    for union in ("oneOf", "anyOf"):
        if union in ref_holder:
            return " | ".join(filter(None, (_schema_name(s) for s in ref_holder[union])))
    return str(ref_holder.get("type", ""))


def _body_name(obj: dict) -> str:
    content = obj.get("content") or {}
    for media in content.values():
        return _schema_name(media.get("schema"))
    return ""


def _endpoint_rows(doc: dict) -> list[str]:
    rows = []
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            request = _body_name(op.get("requestBody") or {})
            responses = ", ".join(
                f"{code} {_body_name(r)}".strip() for code, r in op.get("responses", {}).items()
            )
            rows.append(
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td>"
                "<td>{}</td><td>{}</td></tr>".format(
                    method.upper(),
                    html.escape(path),
                    html.escape(op.get("summary", "")),
                    html.escape(request),
                    html.escape(responses),
                )
            )
    return rows


def _fields(schema: dict) -> str:
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    return ", ".join(
        f"{name}{'' if name in required else '?'}: {_schema_name(p) or 'any'}"
        for name, p in props.items()
    )


def index_html(docs: dict[str, dict[str, Any]], event_doc: dict[str, Any]) -> str:
    """A plain page: every endpoint and event, with links to the JSON documents."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>quizrt protocol</title>",
        "<style>body{font:15px/1.4 system-ui,sans-serif;max-width:70rem;margin:2rem auto;"
        "padding:0 1rem}table{border-collapse:collapse;width:100%;margin-bottom:2rem}"
        "td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;"
        "vertical-align:top}code{font-size:90%}</style>",
        "</head><body>",
        "<h1>quizrt protocol</h1>",
        "<p>Generated by <code>just schemas</code> from the services and "
        "<code>contracts/</code>; do not edit. "
        '<a href="auth.md">Auth model</a> · '
        + " · ".join(f'<a href="openapi-{s}.json">openapi-{s}.json</a>' for s in docs)
        + ' · <a href="events.json">events.json</a> (AsyncAPI style)</p>',
    ]
    for service, doc in docs.items():
        info = doc.get("info", {})
        parts += [
            f"<h2>{html.escape(info.get('title', service))}</h2>",
            f"<p>{html.escape(info.get('description', '') or '')} "
            f'Live: <a href="/api/{service}/schema">/api/{service}/schema</a></p>',
            "<table><tr><th>method</th><th>path</th><th>what</th><th>body</th>"
            "<th>answers</th></tr>",
            *_endpoint_rows(doc),
            "</table>",
        ]
    schemas = event_doc["components"]["schemas"]
    parts += [
        "<h2>Events</h2>",
        "<table><tr><th>channel</th><th>direction</th><th>event</th><th>payload</th></tr>",
    ]
    for cid, channel in event_doc["channels"].items():
        for key in channel["messages"]:
            msg = event_doc["components"]["messages"][f"{cid}.{key}"]
            struct = msg["title"]
            parts.append(
                "<tr><td><code>{}</code> ({})</td><td>{}</td><td><code>{}</code></td>"
                "<td><code>{}</code> {{{}}}</td></tr>".format(
                    html.escape(channel["address"]),
                    html.escape(channel["x-transport"]),
                    html.escape(msg["x-direction"]),
                    html.escape(msg["name"]),
                    html.escape(struct),
                    html.escape(_fields(schemas.get(struct, {}))),
                )
            )
    parts += ["</table>", "</body></html>", ""]
    return "\n".join(parts)


# --------------------------------------------------------------------------- commands


def render() -> dict[str, str]:
    """Every generated document: file name in docs/ -> its exact text."""
    docs = {s: openapi(s) for s in SERVICES}
    event_doc = msgspec.to_builtins(events(), order="sorted")
    out = {f"openapi-{s}.json": _json(doc) for s, doc in docs.items()}
    out["events.json"] = _json(event_doc)
    out["index.html"] = index_html(docs, event_doc)
    return out


def write(directory: Path = DOCS) -> list[str]:
    """Write the documents that changed; returns their names."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in render().items():
        path = directory / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed.append(name)
    return changed


def stale(directory: Path = DOCS) -> list[str]:
    """Names of documents that are missing or differ from what would be generated."""
    return [
        name
        for name, text in render().items()
        if not (directory / name).exists() or (directory / name).read_text() != text
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="infra.schemas",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("command", choices=["docs", "check"])
    ap.add_argument("--dir", type=Path, default=DOCS, help="output folder (default docs/)")
    a = ap.parse_args(argv)
    commands: dict[str, Callable[[Path], list[str]]] = {"docs": write, "check": stale}
    names = commands[a.command](a.dir)
    if a.command == "docs":
        print(f"wrote {', '.join(names)}" if names else "docs/ is up to date")
        return 0
    if names:
        print(f"out of date in {a.dir}: {', '.join(names)}; run `just schemas`", file=sys.stderr)
        return 1
    print("generated documents are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
