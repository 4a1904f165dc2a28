"""Three replicas behind a real nginx and a real HAProxy, sharing one real Redis.

Rolling restarts take each replica out of the proxy first (nginx: marked ``down`` and
reloaded; HAProxy: ``drain`` through its runtime API), then SIGTERM it, start it again and
put it back: no client sees an error. The REST clients behave like HTTP clients do with
requests marked idempotent: one that nginx's reload closes unanswered on an idle
keep-alive connection is sent once more (counted, see ``Load._post``). A SIGKILL fails at most the requests in flight on
that replica, and the proxy stops sending to it within a bound (see KILL_BOUND_S).
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.cluster.conftest import Cluster, InferdReplica, Load, Outcome, v2_body
from tests.conftest import wait_until

REST_CLIENTS = 4
#: After a SIGKILL no request that starts later than this fails. nginx: the first refused
#: connection leaves the replica out and the request goes to another one (at once).
#: HAProxy: refused connections are retried elsewhere at once; its checks mark the replica
#: down after 2 x 500 ms (+ the 1 s check timeout at worst).
KILL_BOUND_S = 2.0


def failures(outcomes: list[Outcome]) -> list[str]:
    return [o.detail for o in outcomes if not o.ok]


def test_a_cache_entry_made_through_one_replica_is_a_hit_on_another(cluster: Cluster) -> None:
    first, second, third = cluster.replicas
    body = v2_body(123456.0)
    made = httpx.post(f"{first.url}/v2/models/m/infer", json=body)
    elsewhere = httpx.post(f"{second.url}/v2/models/m/infer", json=body)
    again = httpx.post(f"{third.url}/v2/models/m/infer", json=body)
    assert made.headers["x-cache"] == "miss"
    assert [elsewhere.headers["x-cache"], again.headers["x-cache"]] == ["hit", "hit"]
    assert elsewhere.json()["outputs"] == made.json()["outputs"]


def rolling_restart(cluster: Cluster, take_out, put_back) -> None:  # type: ignore[no-untyped-def]
    for number, replica in enumerate(cluster.replicas, start=1):
        take_out(number, replica)
        assert replica.terminate() == 0
        replica.start()
        replica.wait_ready()
        put_back(number, replica)


def test_rolling_restart_behind_nginx_has_no_errors(cluster: Cluster) -> None:
    nginx = cluster.nginx
    load = Load(nginx.url, REST_CLIENTS, grpc_target=nginx.grpc_target)
    try:
        load.wait_for(50)
        rolling_restart(
            cluster,
            lambda number, _: nginx.reload(down=frozenset({number})),
            lambda _, __: nginx.reload(),
        )
        load.wait_for(50)
    finally:
        outcomes = load.stop()
    assert failures(outcomes) == []
    assert sum(o.detail.startswith("grpc") for o in outcomes) > 20
    # At most one resend per client per reload (six reloads).
    assert load.resent <= REST_CLIENTS * 6


def set_state(cluster: Cluster, number: int, state: str) -> None:
    for backend in ("inferd_http", "inferd_grpc"):
        cluster.haproxy.command(f"set server {backend}/r{number} state {state}")


def test_rolling_restart_behind_haproxy_has_no_errors(cluster: Cluster) -> None:
    haproxy = cluster.haproxy

    def take_out(number: int, _: InferdReplica) -> None:
        set_state(cluster, number, "drain")
        wait_until(lambda: haproxy.servers()[f"r{number}"]["scur"] == "0", 10, "drained")

    def put_back(number: int, _: InferdReplica) -> None:
        set_state(cluster, number, "ready")
        wait_until(lambda: haproxy.servers()[f"r{number}"]["status"] == "UP", 10, "up")

    load = Load(haproxy.url, REST_CLIENTS)
    try:
        load.wait_for(50)
        rolling_restart(cluster, take_out, put_back)
        load.wait_for(50)
    finally:
        outcomes = load.stop()
    assert failures(outcomes) == []


@pytest.mark.parametrize("proxy", ["nginx", "haproxy"])
def test_sigkill_fails_at_most_the_requests_in_flight(cluster: Cluster, proxy: str) -> None:
    front = cluster.nginx if proxy == "nginx" else cluster.haproxy
    victim = cluster.replicas[2]
    load = Load(front.url, REST_CLIENTS)
    try:
        load.wait_for(50)
        killed_at = time.monotonic()
        victim.kill()
        if proxy == "haproxy":
            wait_until(
                lambda: cluster.haproxy.servers()["r3"]["status"].startswith("DOWN"),
                KILL_BOUND_S + 1,
                "haproxy to mark the replica down",
            )
        wait_until(lambda: time.monotonic() > killed_at + KILL_BOUND_S + 1, 10, "the bound")
        load.wait_for(50)
    finally:
        outcomes = load.stop()
        victim.start()
        victim.wait_ready()
        if proxy == "haproxy":
            wait_until(lambda: cluster.haproxy.servers()["r3"]["status"] == "UP", 10, "r3 up again")
    failed = [o for o in outcomes if not o.ok]
    assert len(failed) <= REST_CLIENTS, failures(outcomes)
    assert all(o.started <= killed_at + KILL_BOUND_S for o in failed), failures(outcomes)
    assert sum(o.started > killed_at + KILL_BOUND_S for o in outcomes) > 20
