"""What the tests share (no tests in here).

- ``api``: the public HTTP protocol as the tests speak it (``Api``: guests and hosts,
  the quiz calls ``join``/``question``/``answer``), unique names, loopback addresses;
- ``game``: quizzes and sessions played through nginx (``Quiz``, ``LiveGame``),
  sessions written the way the quiz service writes them (``Board``), SCORE_CHANGE
  records read back from Kafka;
- ``player``: a python-socketio client that records every ``leaderboard`` event;
- ``stack``: the test stack itself (``stack_cmd`` runs ``python -m infra.stack``,
  ports from ``stack.json``, polling);
- ``tokens``: access-token claims as IAM issues them, signed with the stack's own key
  or a stranger's, and the hostile tokens every service must refuse.

The fault harness (``tests/chaos/``) has its own simulated player and game. What every
simulated player shares (this one, the fault harness's, the bench's and Locust's: when
to retry, reading a join ack, the record of answers and snapshots) is
``loadtests.playercore``: it lives under ``loadtests/`` because the load generator must
not import ``tests/``.
"""
