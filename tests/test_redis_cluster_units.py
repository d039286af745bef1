"""Cluster URLs (services/common/redis_cluster.py): which URLs name a cluster, their
startup nodes and options, and the one-node URL for plain python-socketio tools.
The cluster itself is exercised by tests/test_cluster.py."""

from __future__ import annotations

import pytest

from services.common.redis_cluster import is_cluster_url, node_url, parse_cluster_url


@pytest.mark.parametrize(
    ("url", "flag", "expected"),
    [
        ("redis+cluster://127.0.0.1:7001/0", False, True),
        ("rediss+cluster://cfg.example:6379", False, True),
        ("REDIS+CLUSTER://h:1", False, True),
        ("redis://127.0.0.1:6379/0", False, False),
        ("redis://127.0.0.1:6379/0", True, True),
        ("redis+sentinel://h:1/0/mymaster", False, False),
    ],
)
def test_which_urls_name_a_cluster(url: str, flag: bool, expected: bool) -> None:
    assert is_cluster_url(url, flag) is expected


def test_startup_nodes_and_options_come_from_the_url() -> None:
    nodes, opts = parse_cluster_url("redis+cluster://127.0.0.1:7001,127.0.0.1:7002,h3/0")
    assert nodes == [("127.0.0.1", 7001), ("127.0.0.1", 7002), ("h3", 6379)]
    assert opts == {}
    nodes, opts = parse_cluster_url("rediss+cluster://us%40r:p%3Ass@cfg.example:6380/0")
    assert nodes == [("cfg.example", 6380)]
    assert opts == {"ssl": True, "username": "us@r", "password": "p:ss"}
    _, opts = parse_cluster_url("redis+cluster://secret@h:1")
    assert opts == {"password": "secret"}


def test_node_url_is_the_first_node_as_a_plain_url() -> None:
    assert node_url("redis+cluster://127.0.0.1:7001,127.0.0.1:7002/0") == "redis://127.0.0.1:7001/0"
    assert node_url("rediss+cluster://u:p@h:1,h:2/0") == "rediss://u:p@h:1/0"
    assert node_url("redis://x:1/3") == "redis://x:1/3"
