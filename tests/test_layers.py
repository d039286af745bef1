"""Imports run one way: each layer of the runtime imports only itself and the layers
below it (read from the code with ``ast``, every import, also those inside functions).

    contracts/          the messages: nothing of the project
    services/common/    + contracts
    services/board/     + services.common (the Redis board and the session's view)
    services/<service>/ + services.board, its own package (never another service)
    realtime_sio/       + services.board (never a service)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.stack import ROOT

# Top-level names of the project's own code; anything else is a third-party import.
PROJECT = {"contracts", "services", "realtime_sio", "infra", "tests", "loadtests", "piccolo_conf"}
BELOW_SERVICES = ("contracts", "services.common", "services.board")
SERVICES = sorted(
    p.name
    for p in (ROOT / "services").iterdir()
    if (p / "__init__.py").exists() and p.name not in ("common", "board")
)


def allowed(folder: str) -> tuple[str, ...]:
    """The project packages a module under ``folder`` may import."""
    if folder == "contracts":
        return ("contracts",)
    if folder == "services/common":
        return ("contracts", "services.common")
    if folder == "services/board":
        return ("contracts", "services.common", "services.board")
    if folder == "realtime_sio":
        return (*BELOW_SERVICES, "realtime_sio")
    return (*BELOW_SERVICES, folder.replace("/", "."))


def project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of the project's own code in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from services import board` imports services.board
            names = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue  # relative imports stay inside their package
        found += [(node.lineno, n) for n in names if n.split(".")[0] in PROJECT]
    return found


def within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def forbidden(folder: str) -> list[str]:
    ok = allowed(folder)
    return [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / folder).rglob("*.py"))
        for line, module in project_imports(path)
        if not within(module, ok)
    ]


FOLDERS = ["contracts", "services/common", "services/board", "realtime_sio"] + [
    f"services/{s}" for s in SERVICES
]


@pytest.mark.parametrize("folder", FOLDERS)
def test_layer_imports_only_what_lies_below(folder: str) -> None:
    assert forbidden(folder) == []


def test_the_rule_sees_every_form_of_import(tmp_path: Path) -> None:
    # An empty list above means no such import, not an import the walk cannot read.
    src = tmp_path / "m.py"
    src.write_text(
        "import json\n"
        "from services import board\n"
        "from . import sibling\n"
        "def later():\n"
        "    import services.leaderboard.consumer\n"
        "    from services.quiz.content import load_quiz\n"
    )
    assert project_imports(src) == [
        (2, "services.board"),
        (5, "services.leaderboard.consumer"),
        (6, "services.quiz.content.load_quiz"),
    ]
    assert "services.board.reads" in {m for _, m in project_imports(ROOT / "realtime_sio/app.py")}
    assert {"iam", "quiz", "leaderboard"} <= set(SERVICES)
    assert not within("services.leaderboard.consumer", allowed("realtime_sio"))
    assert not within("services.boardroom", allowed("realtime_sio"))
    assert within("services.quiz.content", allowed("services/quiz"))
    assert not within("services.quiz.content", allowed("services/leaderboard"))
