"""reports/bench.json, reports/bench.md and reports/bench-latency.png from one bench run."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from loadtests.profiles import markdown as profile_markdown
from loadtests.stats import ratio

TARGETS = {
    "many-rooms": "answer->leaderboard p99 <= 100 ms, p50 <= 30 ms; 100% delivered; no disconnects",
    "stadium": "answer->leaderboard p99 <= 1.5 x bare room emit to as many clients",
    "spike": ">= 1,000 accepted answers/s; round trip p99 <= 150 ms; >= 0.3 x bare POST",
    "stadium-5000": "every player finishes; answer->leaderboard p99 <= 1 s; question fan-out"
    " p99 <= 500 ms",
    "memory": "<= 50 MB resident per 1,000 sockets in the socket.io tier",
    "cpu": "<= 20 us of socket.io CPU per leaderboard delivery",
}
SEND_ARRIVE = "client -> quiz"
SEND_EMIT = "client -> emitted"
HOP_NAMES = {
    "arrive_commit": "arrive -> commit",
    "commit_produce": "commit -> produce",
    "produce_ack": "produce -> Kafka ack",
    "ack_read": "ack -> consumer read",
    "read_emit": "read -> emitted",
    "emit_client": "emitted -> at the client",
}


def a2l_budget_ms(name: str, d: dict) -> float | None:
    """The answer->leaderboard p99 budget of a scenario (ms), None when it has none."""
    if name == "many-rooms":
        return 100.0
    if name == "stadium" and d.get("bare_emit_last_client_p50_ms"):
        return round(1.5 * d["bare_emit_last_client_p50_ms"], 1)
    if name == "stadium-5000":
        return 1000.0
    return None


def hop_verdict(r: dict, budget: float | None, top10: bool = False) -> str:
    """Which hop breaks the budget (the largest p99 when the end-to-end p99 is over it)."""
    names = {"send_arrive": SEND_ARRIVE, **HOP_NAMES}
    hops_key, a2l_key = (
        ("hops_top10_ms", "answer_to_leaderboard_top10_ms")
        if top10
        else ("hops_ms", "answer_to_leaderboard_ms")
    )
    hops = {h: (r.get(hops_key, {}).get(h) or {}).get("p99") for h in names}
    known = {h: v for h, v in hops.items() if v is not None}
    if not known:
        return "no traces"
    worst = max(known, key=lambda h: known[h])
    p99 = (r.get(a2l_key) or {}).get("p99")
    if budget is None or p99 is None:
        return f"largest: {names[worst]}"
    if p99 <= budget:
        return f"within budget; largest: {names[worst]}"
    return f"**{names[worst]}** ({_f(known[worst])} of {_f(p99)} ms)"


def hop_lines(result: dict, der: dict[str, dict]) -> list[str]:
    """The latency budget per hop: p50 / p99 of each hop, and which one breaks it."""
    lines = [
        "",
        "## Latency budget per hop (ms, p50 / p99)",
        "",
        "From the trace each `leaderboard` event carries (the newest answer behind the"
        " snapshot: arrived, committed, produced, Kafka's append time, read and emitted by"
        " the consumer), once per snapshot; `emitted -> at the client` per receipt."
        " `arrive -> client` is the server-side start to the receipt. 0 = not recorded"
        " (a hop without samples shows n/a). The `top-10 answers` rows: the answers whose"
        " reply ranked the player in the top 10 (the ones that change what the others"
        " see), as their senders received them: the hops from each one's own trace (in"
        " the event of the answer's own version; `client -> quiz` is the client's send to"
        " the quiz service's arrival); `client -> emitted` (the client's send to the"
        " consumer's emit) and `emitted -> at the client` of every such answer, which add"
        " up to its answer -> leaderboard (in the `arrive -> client` column of the row).",
        "",
        "| scenario | "
        + " | ".join([SEND_ARRIVE, *HOP_NAMES.values(), SEND_EMIT])
        + " | arrive -> client | a2l p99 / budget | breaks the budget |",
        "|---|" + "---|" * (len(HOP_NAMES) + 5),
    ]

    def cell(hops: dict, h: str) -> str:
        return f"{_f((hops.get(h) or {}).get('p50'))} / {_f((hops.get(h) or {}).get('p99'))}"

    for name, r in result.get("scenarios", {}).items():
        hops = r.get("hops_ms", {})
        budget = a2l_budget_ms(name, der.get(name, {}))
        cells = [cell(hops, h) for h in ["send_arrive", *HOP_NAMES, "send_emit", "arrive_client"]]
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {_f(r['answer_to_leaderboard_ms']['p99'])} / {_f(budget)}"
            f" | {hop_verdict(r, budget)} |"
        )
        top = r.get("hops_top10_ms") or {}
        if not any((v or {}).get("count") for v in top.values()):
            continue
        a2l = r.get("answer_to_leaderboard_top10_ms") or {}
        n = (top.get("read_emit") or {}).get("count", 0)
        cells = [cell(top, h) for h in ["send_arrive", *HOP_NAMES, "send_emit"]]
        lines.append(
            f"| {name}, top-10 answers ({n} traced) | "
            + " | ".join(cells)
            + f" | {_f(a2l.get('p50'))} / {_f(a2l.get('p99'))}"
            f" | {_f(a2l.get('p99'))} / {_f(budget)}"
            f" | {hop_verdict(r, budget, top10=True)} |"
        )
    return lines


def burst_rate(r: dict) -> float | None:
    """Median over questions of accepted / (last reply - first send): the spike's rate."""
    rates = [b["accepted_per_s"] for b in r.get("bursts", []) if b["accepted_per_s"]]
    return round(statistics.median(rates), 1) if rates else None


def derived(result: dict) -> dict[str, dict]:
    """Ratios to the floors and target checks, per scenario."""
    floors = result.get("floors", {})
    post = floors.get("http_post", {})
    out = {}
    for name, r in result.get("scenarios", {}).items():
        emit = floors.get("sio_room_emit", {}).get(r.get("floor_room_size") or "", {})
        emit_last = (emit.get("emit_to_last_client_ms") or {}).get("p50")
        a2l = r["answer_to_leaderboard_ms"]
        rate = burst_rate(r) if name == "spike" else r["answers_per_s"]
        if r.get("leaderboard_deliveries_per_s") is None and r.get("answers_per_s"):
            window = r["answers_accepted"] / r["answers_per_s"]  # runs before the field
            r["leaderboard_deliveries_per_s"] = round(r["leaderboard_events_delivered"] / window, 1)
        clients = emit.get("clients")
        # What the bare tier delivers to one room: clients per (emit -> last client).
        capacity = round(clients / emit_last * 1000.0, 0) if clients and emit_last else None
        d = {
            "leaderboard_deliveries_per_s": r.get("leaderboard_deliveries_per_s"),
            "bare_emit_deliveries_per_s": capacity,
            "deliveries_vs_bare_capacity": ratio(r.get("leaderboard_deliveries_per_s"), capacity),
            "answers_per_s": rate,
            "answers_per_s_vs_bare_post": ratio(rate, post.get("requests_per_s"), 3),
            "rtt_p99_vs_bare_post_p99": ratio(
                r["answer_rtt_ms"]["p99"], (post.get("rtt_ms") or {}).get("p99")
            ),
            "a2l_p99_vs_bare_emit": ratio(a2l["p99"], emit_last),
            "bare_emit_last_client_p50_ms": emit_last,
            "bare_emit_clients": emit.get("clients"),
        }
        checks = {}
        if name == "many-rooms":
            checks["a2l p99 <= 100 ms"] = _le(a2l["p99"], 100)
            checks["a2l p50 <= 30 ms"] = _le(a2l["p50"], 30)
        if name == "stadium":
            checks["a2l p99 <= 1.5 x bare emit"] = _le(d["a2l_p99_vs_bare_emit"], 1.5)
            checks["a2l p50 <= 0.7 x bare emit"] = _le(ratio(a2l["p50"], emit_last), 0.7)
        # The answers that change what the others see, timed where they see it.
        others = r.get("answer_to_leaderboard_top10_others_ms") or {}
        for pct, limit, label in _a2l_limits(name, emit_last) if others.get("count") else ():
            checks[f"top-10 answers at the others: {pct} <= {label}"] = _le(others[pct], limit)
        if name == "many-rooms":
            checks["0 failed joins"] = r.get("players_failed", 0) == 0
        if name == "stadium-5000":
            checks["a2l p99 <= 1 s"] = _le(a2l["p99"], 1000)
            checks["question fan-out p99 <= 500 ms"] = _le(r["question_fanout_lag_ms"]["p99"], 500)
            ended = r.get("events_received_by_name", {}).get("session_ended", 0)
            checks["every player finished"] = (
                r.get("players_failed", 0) == 0 and ended >= r["players_connected"]
            )
        sio_us = (r.get("cpu_per_unit") or {}).get("sio_us_per_delivery")
        if sio_us is not None and r["players_connected"] >= 500:
            checks["<= 20 us socket.io CPU per delivery"] = _le(sio_us, 20)
        if name == "spike":
            checks[">= 1000 answers/s"] = None if rate is None else rate >= 1000
            checks["rtt p99 <= 150 ms"] = _le(r["answer_rtt_ms"]["p99"], 150)
            checks[">= 0.3 x bare POST"] = (
                None
                if d["answers_per_s_vs_bare_post"] is None
                else d["answers_per_s_vs_bare_post"] >= 0.3
            )
        checks["100% events delivered"] = r["leaderboard_delivery_pct"] == 100.0
        checks["no disconnects"] = r["disconnects"] == 0
        if r.get("sio_rss_mb_per_1000_sockets_added") is not None and r["players_connected"] >= 500:
            checks["<= 50 MB / 1000 sockets (added)"] = _le(
                r["sio_rss_mb_per_1000_sockets_added"], 50
            )
        d["checks"] = checks
        out[name] = d
    return out


def _a2l_limits(name: str, emit_last: float | None) -> list[tuple[str, float, str]]:
    """The issue's answer->leaderboard targets of a scenario: (percentile, ms, as said)."""
    if name == "many-rooms":
        return [("p99", 100.0, "100 ms"), ("p50", 30.0, "30 ms")]
    if name == "stadium" and emit_last:
        return [
            ("p99", 1.5 * emit_last, "1.5 x bare emit"),
            ("p50", 0.7 * emit_last, "0.7 x bare emit"),
        ]
    return []


def _le(a: float | None, b: float) -> bool | None:
    return None if a is None else a <= b


def _f(x: object, unit: str = "") -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        if 0 < abs(x) < 1:
            x = f"{x:.2g}"
        else:
            x = f"{x:,.1f}" if abs(x) < 100 else f"{x:,.0f}"
    return f"{x}{unit}"


def _at_p99(s: dict) -> str:
    """How many answers the p99 of samples at the other players rests on."""
    if not s.get("answers"):
        return ""
    return f"; p99 set by {s.get('answers_at_p99', 0)} of {s['answers']} answers"


def _trip(s: dict) -> str:
    return " / ".join(_f(s.get(k)) for k in ("p50", "p95", "p99"))


def unit_cost_lines(result: dict) -> list[str]:
    """CPU per unit of work, beside the floors' (robust to other load on the machine)."""
    floors = result.get("floors", {})
    post = floors.get("http_post", {})
    emits = floors.get("sio_room_emit", {})
    bare_req = post.get("cpu_ms_per_request")
    gateway = floors.get("http_post_gateway", {})
    check = (
        " The gateway's check on the bare POST (cached verdict): nginx"
        f" {_f(gateway['without_check'].get('nginx_cpu_ms_per_request'))} ->"
        f" {_f(gateway['with_check'].get('nginx_cpu_ms_per_request'))} ms per request, IAM"
        f" {_f(gateway['with_check'].get('iam_cpu_ms_per_request'))} ms."
        if gateway
        else ""
    )
    lines = [
        "",
        "## CPU per unit of work",
        "",
        "CPU time of the processes divided by the work they did during play; unlike the"
        " latencies this hardly changes when other work competes for the cores. Floors:"
        f" bare POST server {_f(bare_req)} ms + nginx {_f(post.get('nginx_cpu_ms_per_request'))}"
        " ms per request; bare room emit "
        + ", ".join(
            f"{_f(f.get('cpu_us_per_delivery'))} us per delivery ({f['clients']} clients)"
            for f in emits.values()
        )
        + "."
        + check,
        "",
        "| scenario | quiz ms/answer (x bare POST) | postgres ms/answer | nginx ms/answer |"
        " IAM ms/answer (gateway verdicts) | consumer ms/broadcast |"
        " socket.io us per leaderboard delivery |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in result.get("scenarios", {}).items():
        u = r.get("cpu_per_unit") or {}
        lines.append(
            f"| {name} | {_f(u.get('quiz_ms_per_answer'))}"
            f" ({_f(ratio(u.get('quiz_ms_per_answer'), bare_req, 1))}) |"
            f" {_f(u.get('postgres_ms_per_answer'))} | {_f(u.get('nginx_ms_per_answer'))} |"
            f" {_f(u.get('iam_ms_per_answer'))} |"
            f" {_f(u.get('consumer_ms_per_broadcast'))} | {_f(u.get('sio_us_per_delivery'))} |"
        )
    return lines


# Issue 16's CPU budget per accepted answer in the spike (ms, all processes of a kind).
CPU_PER_ANSWER_TARGETS = {"quiz": 0.6, "postgres": 0.4, "kafka": 0.2}


def cpu_per_answer(r: dict) -> dict[str, float]:
    """CPU ms per accepted answer of each process kind (quiz-1 + quiz-2 = quiz, ...),
    over the whole play (idle time between questions included: a process that burns
    CPU while idle pays for it here)."""
    wall = r.get("machine_load", {}).get("interval_s") or 0.0
    answers = r.get("answers_accepted") or 0
    out: dict[str, float] = {}
    if not wall or not answers:
        return out
    for proc, pct in r.get("cpu_pct_of_one_core", {}).items():
        kind = proc.rsplit("-", 1)[0] if proc[-1:].isdigit() else proc
        out[kind] = out.get(kind, 0.0) + pct / 100.0 * wall * 1000.0 / answers
    return {k: round(v, 3) for k, v in out.items()}


def cpu_per_answer_lines(result: dict) -> list[str]:
    """One row per process kind, one column per scenario: CPU ms per accepted answer."""
    per = {name: cpu_per_answer(r) for name, r in result.get("scenarios", {}).items()}
    kinds: list[str] = []
    for costs in per.values():
        kinds += [k for k in costs if k not in kinds]
    budget = ", ".join(f"{k} <= {v} ms" for k, v in CPU_PER_ANSWER_TARGETS.items())
    lines = [
        "",
        "## CPU per accepted answer, every process",
        "",
        "CPU ms of each kind of process during play divided by the answers accepted"
        " (the outbox relay runs inside quiz; generator = the load generator). Spike"
        f" budget (issue 16): {budget}.",
        "",
        "| process | " + " | ".join(per) + " |",
        "|---|" + "---|" * len(per),
    ]
    for kind in kinds:
        cells = []
        for name, costs in per.items():
            v = costs.get(kind)
            cell = _f(v)
            target = CPU_PER_ANSWER_TARGETS.get(kind)
            if name == "spike" and target is not None and v is not None:
                cell += " (met)" if v <= target else " (**missed**)"
            cells.append(cell)
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return lines


def markdown(result: dict, der: dict[str, dict]) -> str:
    m = result["machine"]
    st = result.get("stack", {})
    floors = result.get("floors", {})
    post = floors.get("http_post", {})
    lines = [
        "# Benchmark",
        "",
        f"`{result['command']}` on {result['started']} (commit {m['commit']}): {m['nproc']}"
        f" cores ({m['cpu_model']}), {m['ram_gb']} GB RAM, Linux {m['kernel']}, Python"
        f" {m['python']}. Every server and the load generator on this one machine.",
        "",
        f"Stack: {'its own, started by the bench' if st.get('own') else 'the running ./dev up'}"
        f" ({st.get('base_url')}), processes {st.get('processes')}.",
        f"nginx limits in force: {st.get('nginx_rates')}"
        + (
            f" (raised for the bench with {st.get('raised_limits')}; all load comes from"
            " 127.0.0.1 and nginx limits per client address; the defaults are unchanged)"
            if st.get("raised_limits")
            else ""
        ),
        f"Generator: {result['generator']['workers']} worker processes,"
        f" {result['generator']['client']}.",
        "",
        "## Floors (same machine, same run)",
        "",
        "| floor | figure |",
        "|---|---|",
        f"| bare Litestar+msgspec POST through the same nginx, same granian settings,"
        f" {st.get('processes', {}).get('quiz')} process(es), {post.get('connections')}"
        f" connections | {_f(post.get('requests_per_s'))} req/s; round trip p50/p95/p99"
        f" {_trip(post.get('rtt_ms', {}))} ms |",
    ]
    sio_procs = st.get("processes", {}).get("sio")
    for f in floors.get("sio_room_emit", {}).values():
        lines.append(
            f"| bare python-socketio room emit (AsyncRedisManager, {sio_procs} process(es))"
            f" to {f['clients']} clients | emit -> last client p50"
            f" {_f(f['emit_to_last_client_ms']['p50'])} ms; emit -> each client p50/p95/p99"
            f" {_trip(f['emit_to_client_ms'])} ms; delivered {f['delivered']}/{f['expected']};"
            f" RSS added per 1000 sockets {_f(f.get('rss_mb_per_1000_sockets_added'))} MB |"
        )
    lines += [
        "",
        "## Scenarios",
        "",
        "| scenario | players (sessions) | answers accepted | answers/s | round trip p50/p95/p99"
        " ms | answer->leaderboard p50/p95/p99 ms (timed) | same, answers that entered the"
        " top 10 | same, at every other player of the session | events delivered/expected |"
        " broadcasts /session/s | disconnects | socket.io RSS MB per 1000 sockets"
        " (total / added) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in result.get("scenarios", {}).items():
        d = der[name]
        a2l = r["answer_to_leaderboard_ms"]
        top10 = r.get("answer_to_leaderboard_top10_ms") or {}
        others = r.get("answer_to_leaderboard_top10_others_ms") or {}
        lines.append(
            f"| {name} | {r['players_connected']} ({r['config']['sessions']}) |"
            f" {r['answers_accepted']}/{r['answers_sent']} | {_f(d['answers_per_s'])} |"
            f" {_trip(r['answer_rtt_ms'])} | {_trip(a2l)} ({a2l['count']}) |"
            f" {_trip(top10)} ({top10.get('count', 0)}) |"
            f" {_trip(others)} ({others.get('count', 0)}{_at_p99(others)}) |"
            f" {r['leaderboard_events_delivered']}/{r['leaderboard_events_expected']}"
            f" ({_f(r['leaderboard_delivery_pct'])}%) | {_f(r['broadcasts_per_session_per_s'])}"
            f" | {r['disconnects']} | {_f(r.get('sio_rss_mb_per_1000_sockets'))} /"
            f" {_f(r.get('sio_rss_mb_per_1000_sockets_added'))} |"
        )
    lines += [
        "",
        "## Ratios to the floors and targets",
        "",
        "| scenario | answers/s / bare POST | round trip p99 / bare POST p99 |"
        " answer->leaderboard p99 / bare emit to last client (clients) | leaderboard"
        " deliveries/s vs what the bare tier delivers to one room of that size | checks |",
        "|---|---|---|---|---|---|",
    ]
    for name, d in der.items():
        checks = "; ".join(
            f"{k}: {'yes' if v else ('n/a' if v is None else '**NO**')}"
            for k, v in d["checks"].items()
        )
        lines.append(
            f"| {name} | {_f(d['answers_per_s_vs_bare_post'])} |"
            f" {_f(d['rtt_p99_vs_bare_post_p99'])} | {_f(d['a2l_p99_vs_bare_emit'])}"
            f" ({_f(d['bare_emit_clients'])}) | {_f(d['leaderboard_deliveries_per_s'])} /"
            f" {_f(d['bare_emit_deliveries_per_s'])} = {_f(d['deliveries_vs_bare_capacity'])}"
            f" | {checks} |"
        )
    lines += [
        "",
        "Targets (issues 7 and 11): " + "; ".join(f"{k}: {v}" for k, v in TARGETS.items()),
        "",
        "## CPU per process (% of one core, during play)",
        "",
    ]
    scen = list(result.get("scenarios", {}))
    procs: list[str] = []
    for r in result.get("scenarios", {}).values():
        procs += [p for p in r.get("cpu_pct_of_one_core", {}) if p not in procs]
    lines.append("| process | " + " | ".join(scen) + " |")
    lines.append("|---|" + "---|" * len(scen))
    for p in procs:
        lines.append(
            f"| {p} | "
            + " | ".join(
                _f(result["scenarios"][s].get("cpu_pct_of_one_core", {}).get(p)) for s in scen
            )
            + " |"
        )
    lines += hop_lines(result, der)
    lines += unit_cost_lines(result)
    lines += cpu_per_answer_lines(result)
    lines += [
        "",
        "## Machine load during play",
        "",
        "Other work on the machine competes with the stack; figures taken while it used a"
        " large share of the cores are contended and say so here.",
        "",
        "| scenario | load average (1 min) at start / end | machine busy, % of one core"
        f" (all = {100 * (m.get('nproc') or 1)}) | used outside the stack and generator"
        " | stolen by the hypervisor (a VM's steal), % of one core |",
        "|---|---|---|---|---|",
    ]
    for name, r in result.get("scenarios", {}).items():
        ld = r.get("machine_load", {})
        lines.append(
            f"| {name} | {_f(ld.get('loadavg_1m_at_start'))} / {_f(ld.get('loadavg_1m_at_end'))}"
            f" | {_f(ld.get('busy_pct_of_one_core'))} | {_f(ld.get('outside_pct_of_one_core'))}"
            f" | {_f(ld.get('stolen_pct_of_one_core'))} |"
        )
    lines += ["", "## Details", ""]
    for name, r in result.get("scenarios", {}).items():
        lines.append(
            f"- {name}: {r['config']['description']}; setup {r['setup_s']} s, play"
            f" {r['play_s']} s; status {r['answer_status']}; answer->leaderboard outcome"
            f" {r['answer_to_leaderboard']}; fan-out spread per broadcast (first to last"
            f" client) p50/p95/p99 {_trip(r['fanout_spread_ms'])} ms; question event lag"
            f" p50/p99 {_f(r['question_fanout_lag_ms']['p50'])}/"
            f"{_f(r['question_fanout_lag_ms']['p99'])} ms"
            + (
                f"; bursts {[b['accepted_per_s'] for b in r['bursts']]}/s"
                if name == "spike"
                else ""
            )
            + f"; events received {r.get('events_received_by_name', {})}"
            + (f"; errors {r['errors'][:3]}" if r["errors"] else "")
            + (f"; disconnect reasons {r['disconnect_reasons']}" if r["disconnects"] else "")
        )
    if result.get("profiles"):
        lines += [
            "",
            "## Where the time goes (py-spy, a second play of the scenario)",
            "",
            "Share of samples per function: self = at the top of the stack;"
            " inclusive = anywhere in the stack (project code only).",
        ]
        lines += profile_markdown(result["profiles"])
    lines += [
        "",
        "answer->leaderboard: from sending the answer to the first `leaderboard` event on the"
        " same client that reflects it (the first with `version` >= the reply's `version`;"
        " for replies without a version, only answers that entered the top 10, matched by"
        " score). See docs/benchmarks.md.",
        "",
        "![latency](bench-latency.png)",
        "",
    ]
    return "\n".join(lines)


def plot(result: dict, dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, title in (
        (axes[0], "answer_to_leaderboard_ms", "answer -> leaderboard"),
        (axes[1], "answer_rtt_ms", "answer round trip"),
    ):
        for name, r in result.get("scenarios", {}).items():
            xs = sorted(r.get("samples", {}).get(key, []))
            if not xs:
                continue
            ys = [(i + 1) / len(xs) * 100 for i in range(len(xs))]
            ax.plot(xs, ys, label=f"{name} (n={len(xs)})")
        ax.set_xscale("log")
        ax.set_xlabel("ms (log scale)")
        ax.set_ylabel("% of answers at or below")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.axhline(99, color="grey", lw=0.5, ls="--")
        ax.legend(fontsize=8)
    m = result["machine"]
    fig.suptitle(f"{result['command']}: {m['nproc']} cores, {m['cpu_model']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)


def summary_text(result: dict, der: dict[str, dict]) -> str:
    """A few lines a person reads at a glance."""
    post = result.get("floors", {}).get("http_post", {})
    lines = [
        "",
        "== bench summary ==",
        f"floor: bare POST {_f(post.get('requests_per_s'))} req/s; "
        + "; ".join(
            f"bare emit to {f['clients']}: last client p50"
            f" {_f(f['emit_to_last_client_ms']['p50'])} ms"
            for f in result.get("floors", {}).get("sio_room_emit", {}).values()
        ),
    ]
    for name, r in result.get("scenarios", {}).items():
        d = der[name]
        a2l = r["answer_to_leaderboard_ms"]
        failed = [k for k, v in d["checks"].items() if v is False]
        outside = r.get("machine_load", {}).get("outside_pct_of_one_core", 0)
        if outside > 25:
            failed.append(f"(contended: other work used {outside:.0f}% of a core)")
        lines.append(
            f"{name:11} {_f(d['answers_per_s']):>7} answers/s"
            f"  rtt p99 {_f(r['answer_rtt_ms']['p99']):>6}"
            f" ms  a2l p50/p99 {_f(a2l['p50'])}/{_f(a2l['p99'])} ms  events"
            f" {_f(r['leaderboard_delivery_pct'])}%  "
            + ("all checks met" if not failed else "MISSED: " + ", ".join(failed))
        )
        top10 = r.get("answer_to_leaderboard_top10_ms") or {}
        others = r.get("answer_to_leaderboard_top10_others_ms") or {}
        lines.append(
            f"{'':11} top-10 answers a2l p50/p99 {_f(top10.get('p50'))}/{_f(top10.get('p99'))}"
            f" ms (at the other players {_f(others.get('p50'))}/{_f(others.get('p99'))}"
            f" ms{_at_p99(others)}); players in {_f(r.get('join_s'))} s; question fan-out p99"
            f" {_f(r['question_fanout_lag_ms']['p99'])} ms; socket.io"
            f" {_f((r.get('cpu_per_unit') or {}).get('sio_us_per_delivery'))} us/delivery;"
            f" hops: {hop_verdict(r, a2l_budget_ms(name, d))}; top-10 answers' hops:"
            f" {hop_verdict(r, a2l_budget_ms(name, d), top10=True)}"
        )
    return "\n".join(lines)


def write_reports(result: dict, out: Path) -> dict[str, Path | str]:
    der = derived(result)
    result["derived"] = der
    out.mkdir(parents=True, exist_ok=True)
    js = out / "bench.json"
    js.write_text(json.dumps(result, indent=1))
    md = out / "bench.md"
    md.write_text(markdown(result, der))
    png = out / "bench-latency.png"
    try:
        plot(result, png)
    except Exception as e:  # the numbers matter more than the picture
        print(f"plot failed: {e!r}")
    return {"json": js, "markdown": md, "plot": png, "summary": summary_text(result, der)}
