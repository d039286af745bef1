"""The load scenarios, shared by the Locust file and the bench's own generator.

Every scenario is a population of guest players with sockets in the rooms of one
or more sessions, and a rule for when each player answers. Sizes are the issue's;
``quick`` sizes are for ``just bench-quick``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Scenario:
    name: str
    mode: str  # "live" | "self_paced"
    players: int
    sessions: int  # live: sessions the players are spread over; self-paced: public quizzes
    questions: int
    time_limit_s: int
    # Live: each player answers at a uniform random moment this many seconds after
    # the question reached it. Self-paced: think time before each answer.
    answer_after_s: tuple[float, float]
    p_correct: float = 0.75
    # Live: sessions open their questions this far apart (spreads the load over
    # the cycle); 0 opens all sessions' questions together (the spike).
    stagger: bool = True
    note: str = ""

    def with_size(
        self,
        players: int | None = None,
        sessions: int | None = None,
        questions: int | None = None,
        time_limit_s: int | None = None,
    ) -> Scenario:
        """A copy with some sizes changed (the answer window scales with the time limit)."""
        s = self
        if time_limit_s is not None and time_limit_s != s.time_limit_s:
            f = time_limit_s / s.time_limit_s
            lo, hi = s.answer_after_s
            s = replace(
                s, time_limit_s=time_limit_s, answer_after_s=(round(lo * f, 2), round(hi * f, 2))
            )
        return replace(
            s,
            players=players or s.players,
            sessions=sessions or s.sessions,
            questions=questions or s.questions,
        )

    @property
    def cycle_s(self) -> float:
        """Live: seconds between two questions of one session (the host advances then)."""
        return self.time_limit_s + 0.3

    @property
    def description(self) -> str:
        """One line: who plays what, and when they answer."""
        lo, hi = self.answer_after_s
        where = (
            f"{self.sessions} live session{'s' * (self.sessions > 1)}"
            if self.mode == "live"
            else f"{self.sessions} public self-paced quizzes"
        )
        when = (
            f"answers {lo:g}-{hi:g} s after each question"
            if self.mode == "live"
            else f"thinks {lo:g}-{hi:g} s per question"
        )
        return (
            f"{self.players:,} players in {where}, {self.questions} questions of"
            f" {self.time_limit_s} s, each player {when}"
            + ("" if self.stagger or self.mode != "live" else ", all sessions at once")
        )

    def as_dict(self) -> dict:
        return {**asdict(self), "description": self.description}


# One row a scenario: name, mode, players, sessions, questions, time limit (s), answer
# window (s); then the exceptions to the defaults.
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("classroom", "live", 30, 1, 5, 10, (0.5, 8.0)),
        Scenario("stadium", "live", 1000, 1, 5, 10, (0.3, 9.0)),
        Scenario("many-rooms", "live", 2000, 20, 5, 10, (0.3, 9.3)),
        Scenario("self-paced", "self_paced", 1000, 100, 5, 20, (2.0, 8.0)),
        Scenario(
            "stadium-5000",
            "live",
            5000,
            1,
            3,
            10,
            (0.3, 9.0),
            note="the moonshot: one live game of 5,000 players on this one machine",
        ),
        Scenario("spike", "live", 2000, 20, 3, 10, (0.0, 1.0), stagger=False),
    ]
}

QUICK: dict[str, Scenario] = {
    "classroom": SCENARIOS["classroom"].with_size(questions=2, time_limit_s=5),
    "many-rooms": SCENARIOS["many-rooms"].with_size(
        players=400, sessions=4, questions=3, time_limit_s=5
    ),
}


def get(name: str, quick: bool = False) -> Scenario:
    """A scenario by name (``quick``: the reduced size when there is one)."""
    if quick and name in QUICK:
        return QUICK[name]
    try:
        return SCENARIOS[name]
    except KeyError:
        raise SystemExit(f"unknown scenario {name!r}; one of {', '.join(SCENARIOS)}") from None


def quiz_body(title: str, questions: int, time_limit_s: int, public: bool = False) -> dict:
    """A quiz whose answer key the generator knows: question i's answer is i % 4."""
    return {
        "title": title,
        "public": public,
        "questions": [
            {
                "text": f"Question {i + 1} of {title}?",
                "choices": ["alpha", "bravo", "charlie", "delta"],
                "answer": i % 4,
                "time_limit_s": time_limit_s,
                "points": 1000,
            }
            for i in range(questions)
        ],
    }


def correct_choice(index: int) -> int:
    """The answer of question ``index`` in a quiz made by ``quiz_body``."""
    return index % 4
