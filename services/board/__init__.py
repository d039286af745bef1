"""The Redis board and the session's shared view, one owner for both.

Used by the quiz service (writes scores, rebuilds a held board), the leaderboard
service (reads, rebuilds, the consumer's restore) and the socket.io tier (the join
read); it imports only ``services.common`` and ``contracts``, never a service.

- ``ranking``: the composite score, board writes and snapshot reads (Redis only);
- ``rebuild``: a board from PostgreSQL when Redis lost it or it was marked dirty;
- ``reads``: the top N and one player's rank, rebuilding a missing board first;
- ``access``: who may read a board and join its room (player or host);
- ``view``: what a socket needs at once (state, mode, the open question), and the
  join's one-round-trip read of role, snapshot and view;
- ``question``: the one place that builds a question's public form (the `question`
  event; never the answer).
"""
