"""The bench report's CPU per accepted answer of every process (no servers)."""

from __future__ import annotations

from loadtests.report import cpu_per_answer, cpu_per_answer_lines


def test_cpu_per_answer_sums_each_kind_of_process_and_checks_the_spike_budget() -> None:
    spike = {
        "answers_accepted": 1000,
        "machine_load": {"interval_s": 10.0},
        # % of one core over 10 s: 10 % = 1 s of CPU = 1 ms per answer.
        "cpu_pct_of_one_core": {"quiz-1": 2.0, "quiz-2": 3.0, "postgres": 5.0, "kafka": 1.0},
    }
    assert cpu_per_answer(spike) == {"quiz": 0.5, "postgres": 0.5, "kafka": 0.1}
    table = "\n".join(cpu_per_answer_lines({"scenarios": {"spike": spike}}))
    assert "| quiz | 0.5 (met) |" in table
    assert "| postgres | 0.5 (**missed**) |" in table
    assert "| kafka | 0.1 (met) |" in table
    assert cpu_per_answer({**spike, "answers_accepted": 0}) == {}
