"""Fault harness: simulated players on the real stack, fault injectors, and the
three-way comparison (what clients saw accepted, PostgreSQL, the leaderboard).

    player.py    one simulated player: HTTP (httpx) + socket.io (AsyncClient), all through nginx
    game.py      a host, a quiz, a session and N players answering it
    faults.py    stop, kill, restart processes of the stack; flush Redis
    truth.py     read PostgreSQL and Redis, compare with what the clients saw
    scenarios.py the fault scenarios of `just chaos` and tests/test_faults.py
    report.py    reports/chaos.md
"""
