"""Locust scenarios: socket.io players and an HTTP host driver.

    just load classroom            headless, bounded, reports under reports/locust/
    just load-ui                   Locust's web UI (pick users; --scenario in the form)
    .venv/bin/locust -f loadtests/locustfile.py --scenario stadium ...

Scenarios are those of ``loadtests.scenarios`` (classroom, stadium, many-rooms,
self-paced, spike). One ``HostDriver`` (HTTP) creates the quiz and the sessions,
waits until the players have joined, then advances the questions and stops the
run when the sessions have ended. ``Player`` users (``SocketIOUser``: python-
socketio's client under gevent) sign in as guests, join, connect, ``join`` the
room, and answer. Besides Locust's HTTP and WS entries, they record:

    answer / round trip            answer POST, sent -> reply
    answer->leaderboard / <how>    sent -> first `leaderboard` event on the same client
                                   that reflects the answer (``loadtests.tracker``)
    answer->leaderboard / missing  (a failure) expected, never delivered
    fanout / question              `question` event: receipt - server_time_ms (same
                                   machine only: it compares clocks)

At the end the run prints, and writes to reports/locust/<scenario>-delivery.json,
whether every player received every snapshot its session broadcast.

The coordination between host and players is in-process: run Locust as one
process (no --processes/--workers). Beyond ~1,000 sockets one gevent process is
the bottleneck; ``just bench`` uses the asyncio generator for that reason.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from pathlib import Path
from typing import Any

import gevent
from gevent.event import Event
from locust import HttpUser, between, events, task
from locust.clients import HttpSession
from locust.contrib.socketio import SocketIOUser

from loadtests import scenarios
from loadtests.playercore import Retry, join_reply, retry_after_s
from loadtests.scenarios import Scenario, correct_choice, quiz_body
from loadtests.tracker import LeaderboardTracker


@events.init_command_line_parser.add_listener
def _args(parser: Any) -> None:
    parser.add_argument(
        "--scenario",
        default="classroom",
        choices=list(scenarios.SCENARIOS),
        include_in_web_ui=True,
        help="which scenario to play",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        default=False,
        help="the reduced size of the scenario, where defined",
    )
    parser.add_argument("--players", type=int, default=0, help="override the player count")
    parser.add_argument(
        "--report-dir", default="reports/locust", help="where the delivery summary goes"
    )


class World:
    """What the host driver made, shared with the players of this process."""

    def __init__(self) -> None:
        self.scenario: Scenario | None = None
        self.sessions: list[str] = []
        self.ready = Event()
        self.joined = 0
        self.trackers: dict[str, list[LeaderboardTracker]] = {}
        self.v0: dict[str, int] = {}
        self.next_session = itertools.count()
        self.done = Event()
        self.finished = 0  # self-paced players with no question left


WORLD = World()


def scenario_of(environment: Any) -> Scenario:
    opts = environment.parsed_options
    sc = scenarios.get(opts.scenario, opts.quick)
    return sc.with_size(players=opts.players or None)


def _call(http: HttpSession, method: str, path: str, name: str, **kw: Any) -> Any:
    """A setup call, retried as ``playercore.Retry`` says (429 and 5xx, Retry-After)."""
    retry = Retry(first=0.5, tries=30, jitter=True, give_up_after=600)
    while True:
        with http.request(method, path, name=name, catch_response=True, **kw) as r:
            if r.status_code in (200, 201):
                r.success()
                return r.json()
            if retry.again(r.status_code, retry_after_s(r.headers.get("Retry-After"))):
                r.success()  # expected back-pressure during setup; retried below
                gevent.sleep(retry.wait)
                continue
            r.failure(f"HTTP {r.status_code}: {r.text[:200]}")
        refused = "still refused" if retry.gave_up else f"HTTP {r.status_code}"
        raise RuntimeError(f"{method} {path}: {refused}")


class HostDriver(HttpUser):
    """Creates the quiz and sessions, starts when the players are in, advances."""

    fixed_count = 1
    wait_time = between(1, 1)

    def on_start(self) -> None:
        sc = WORLD.scenario = scenario_of(self.environment)
        user = f"locust{random.getrandbits(40):x}"
        pw = "locust password 1"
        _call(
            self.client,
            "POST",
            "/api/iam/users",
            "/api/iam/users",
            json={"username": user, "password": pw},
        )
        tok = _call(
            self.client,
            "POST",
            "/api/iam/token",
            "/api/iam/token",
            json={"username": user, "password": pw},
        )
        self.auth = {"Authorization": f"Bearer {tok['access_token']}"}
        if sc.mode == "live":
            quiz = _call(
                self.client,
                "POST",
                "/api/quiz/quizzes",
                "/api/quiz/quizzes",
                headers=self.auth,
                json=quiz_body(f"locust {sc.name}", sc.questions, sc.time_limit_s),
            )
            WORLD.sessions = [
                _call(
                    self.client,
                    "POST",
                    "/api/quiz/sessions",
                    "/api/quiz/sessions",
                    headers=self.auth,
                    json={"quiz_id": quiz["id"], "mode": "live"},
                )["id"]
                for _ in range(sc.sessions)
            ]
        else:
            made = [
                _call(
                    self.client,
                    "POST",
                    "/api/quiz/quizzes",
                    "/api/quiz/quizzes",
                    headers=self.auth,
                    json=quiz_body(
                        f"locust {sc.name} {i}", sc.questions, sc.time_limit_s, public=True
                    ),
                )
                for i in range(sc.sessions)
            ]
            WORLD.sessions = [q["open_session_id"] for q in made]
        WORLD.ready.set()

    @task
    def play(self) -> None:
        sc = WORLD.scenario
        assert sc is not None
        # Start when every player is in the room (or after a generous wait).
        deadline = time.monotonic() + 30 + sc.players / 10
        while WORLD.joined < sc.players and time.monotonic() < deadline:
            gevent.sleep(0.5)
        for sid, trackers in WORLD.trackers.items():
            WORLD.v0[sid] = max((t.ack_version for t in trackers), default=0)
        if sc.mode == "live":
            gevent.joinall(
                [gevent.spawn(self._play_session, sid, i) for i, sid in enumerate(WORLD.sessions)]
            )
        else:
            deadline = time.monotonic() + sc.questions * (sc.answer_after_s[1] + 5) + 30
            while WORLD.finished < WORLD.joined and time.monotonic() < deadline:
                gevent.sleep(0.5)
        gevent.sleep(3)  # let the last snapshots arrive
        WORLD.done.set()
        # Stop the whole run from outside this user's greenlet (quit stops every user).
        gevent.spawn(self.environment.runner.quit)
        gevent.sleep(3600)  # quit() ends this greenlet with the others

    def _play_session(self, sid: str, i: int) -> None:
        sc = WORLD.scenario
        assert sc is not None
        if sc.stagger:
            gevent.sleep(i * sc.cycle_s / len(WORLD.sessions))
        for q in range(sc.questions + 1):
            self.client.post(
                f"/api/quiz/sessions/{sid}/advance",
                headers=self.auth,
                name="/api/quiz/sessions/[id]/advance",
            )
            if q < sc.questions:
                gevent.sleep(sc.cycle_s)


class Player(SocketIOUser):
    """A guest player with a socket.io connection."""

    wait_time = between(1, 1)
    options = {"reconnection": False}

    def on_start(self) -> None:
        WORLD.ready.wait()
        sc = WORLD.scenario
        assert sc is not None
        self.sc = sc
        self.http = HttpSession(self.host, self.environment.events.request, self)
        n = next(WORLD.next_session)
        self.session_id = WORLD.sessions[n % len(WORLD.sessions)]
        tok = _call(
            self.http,
            "POST",
            "/api/iam/guests",
            "/api/iam/guests",
            json={"nickname": f"locust-{n}"},
        )
        self.auth = {"Authorization": f"Bearer {tok['access_token']}"}
        self.tracker = LeaderboardTracker(tok["user"]["id"])
        self._timed = 0
        self.finished = False
        self.answered: set[str] = set()
        _call(
            self.http,
            "POST",
            "/api/quiz/sessions/join",
            "/api/quiz/sessions/join",
            headers=self.auth,
            json={"session_id": self.session_id},
        )
        self.sio.on("leaderboard", self.on_leaderboard)
        self.sio.on("question", self.on_question)
        self.sio.connect(
            self.host,
            auth={"token": tok["access_token"]},
            transports=["websocket"],
            wait_timeout=20,
        )
        reply = join_reply(self.sio.call("join", {"session_id": self.session_id}, timeout=20))
        self.tracker.ack_version = reply.version
        WORLD.trackers.setdefault(self.session_id, []).append(self.tracker)
        WORLD.joined += 1

    def on_stop(self) -> None:
        self.sio.disconnect()

    # ---- events

    def on_leaderboard(self, data: dict) -> None:
        self.tracker.on_leaderboard(data, time.perf_counter(), time.time())
        self._fire_new_latencies()

    def on_question(self, data: dict) -> None:
        lag = time.time() * 1000.0 - data.get("server_time_ms", 0)
        self._fire("fanout", "question", lag)
        if self.sc.mode == "live" and data["question_id"] not in self.answered:
            self.answered.add(data["question_id"])
            gevent.spawn_later(
                random.uniform(*self.sc.answer_after_s),
                self.answer,
                data["question_id"],
                data["index"],
            )

    # ---- answering

    def answer(self, question_id: str, index: int) -> None:
        choice = correct_choice(index)
        if random.random() > self.sc.p_correct:
            choice = (choice + 1) % 4
        t0 = time.perf_counter()
        with self.http.post(
            f"/api/quiz/sessions/{self.session_id}/answers",
            headers=self.auth,
            json={"question_id": question_id, "choice": choice},
            name="/api/quiz/sessions/[id]/answers",
            catch_response=True,
        ) as r:
            t1 = time.perf_counter()
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}: {r.text[:120]}")
                return
            r.success()
        self._fire("answer", "round trip", (t1 - t0) * 1000.0)
        self.tracker.on_answer(t0, r.json())
        self._fire_new_latencies()

    @task
    def self_paced(self) -> None:
        """Self-paced: next question, think, answer; live players just wait for events."""
        if self.sc.mode != "self_paced" or WORLD.done.is_set() or self.finished:
            gevent.sleep(1)
            return
        with self.http.get(
            f"/api/quiz/sessions/{self.session_id}/question",
            headers=self.auth,
            name="/api/quiz/sessions/[id]/question",
            catch_response=True,
        ) as r:
            if r.status_code == 409:  # no question left: this player is done
                r.success()
                self.finished = True
                WORLD.finished += 1
                return
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}: {r.text[:120]}")
                gevent.sleep(1)
                return
            r.success()
        q = r.json()
        if q.get("answered"):
            return
        gevent.sleep(random.uniform(*self.sc.answer_after_s))
        self.answer(q["question_id"], q["index"])

    # ---- recording

    def _fire_new_latencies(self) -> None:
        how = "by version" if self.tracker.by_method["version"] else "by score (top 10)"
        for ms in self.tracker.latencies_ms[self._timed :]:
            self._fire("answer->leaderboard", how, ms)
        self._timed = len(self.tracker.latencies_ms)

    def _fire(self, kind: str, name: str, ms: float, exc: Exception | None = None) -> None:
        self.environment.events.request.fire(
            request_type=kind,
            name=name,
            response_time=ms,
            response_length=0,
            exception=exc,
            context={},
        )


@events.test_stop.add_listener
def _delivery_summary(environment: Any, **_: Any) -> None:
    """Every player must have received every snapshot its session broadcast."""
    if not WORLD.trackers or WORLD.scenario is None:
        return
    delivered = expected = missing_answers = 0
    for sid, trackers in WORLD.trackers.items():
        v0 = WORLD.v0.get(sid, 0)
        union: set[int] = set()
        for t in trackers:
            union |= t.versions_after(v0)
        for t in trackers:
            delivered += len(t.versions_after(v0) & union)
            expected += len(union)
            missing_answers += t.outcome()["missing"]
            for _missing in range(t.outcome()["missing"]):
                environment.events.request.fire(
                    request_type="answer->leaderboard",
                    name="missing",
                    response_time=0,
                    response_length=0,
                    exception=RuntimeError("never reflected"),
                    context={},
                )
    summary = {
        "scenario": WORLD.scenario.name,
        "events_delivered": delivered,
        "events_expected": expected,
        "answers_missing_their_update": missing_answers,
    }
    out = Path(environment.parsed_options.report_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{WORLD.scenario.name}-delivery.json").write_text(json.dumps(summary, indent=1))
    pct = 100.0 * delivered / expected if expected else 100.0
    print(
        f"leaderboard events delivered/expected: {delivered}/{expected} ({pct:.2f}%);"
        f" answers whose update never arrived: {missing_answers}",
        flush=True,
    )
    if delivered != expected or missing_answers:
        environment.process_exit_code = 1
