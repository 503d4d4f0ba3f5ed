"""axon_client.fleet: the placement contract (reference values, ~1/N of the keys move, the C++
client places every key on the same member), failover with one request id in the sync and
asyncio clients against fake servers, the etcd range answer, and three real
axon-baseline-server processes with one killed by SIGKILL (when AXON_BASELINE_SERVER is set)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import axon_client as ax  # noqa: E402
from axon_client import fleet  # noqa: E402
from axon_client.protocol import ErrorCode  # noqa: E402
from fake_server import FakeServer  # noqa: E402

FAST = ax.RetryPolicy(attempt_timeout=0.1, backoff_initial=0.01, max_attempts=3, retry_errors=False)


def owner(ids: List[str], key: int) -> str:
    return ids[fleet.rendezvous_order(ids, key)[0]]


class Placement(unittest.TestCase):
    def test_reference_values(self) -> None:
        # SplitMix64's first output from state 0, FNV-1a 64 of "a" (as published); the C++
        # client pins the same (test_fleet.cc).
        self.assertEqual(fleet.mix64(0), 0xE220A8397B1DCDAF)
        self.assertEqual(fleet.member_hash("a"), fleet.mix64(0xAF63DC4C8601EC8C))

    def test_a_fourth_member_takes_about_a_quarter_and_only_from_the_others(self) -> None:
        three = [f"appliance-{i}" for i in range(3)]
        four = three + ["appliance-3"]
        moved = 0
        for s in range(1, 10001):
            key = fleet.fleet_key(1, 7, s)
            before, after = owner(three, key), owner(four, key)
            if before != after:
                moved += 1
                self.assertEqual(after, "appliance-3")
        self.assertGreaterEqual(moved, 2000)
        self.assertLessEqual(moved, 3000)

    def test_cpp_and_python_place_alike(self) -> None:
        tool = os.environ.get("AXON_FLEET_PLACEMENT_BIN")
        if not tool:
            self.skipTest("AXON_FLEET_PLACEMENT_BIN not set (ctest sets it)")
        fleets = [
            ["a"],
            ["10.0.0.1:7400", "10.0.0.2:7400", "10.0.0.3:7400"],
            [f"appliance-{i}" for i in range(7)],
            ["ä-unicode", "b", "[::1]:7401"],
        ]
        lines, expected = [], []
        for n, ids in enumerate(fleets):
            for tenant, agent, s in [(1, 7, 0), (0xFFFFFFFF, 0xFFFFFFFF, (1 << 64) - 1)] + [
                (n + 1, a, s) for a in (1, 2, 99) for s in range(1, 400)
            ]:
                lines.append(f"{tenant} {agent} {s} {','.join(ids)}")
                order = fleet.rendezvous_order(ids, fleet.fleet_key(tenant, agent, s))
                expected.append(",".join(ids[i] for i in order))
        out = subprocess.run([tool], input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        got = out.stdout.splitlines()
        self.assertEqual(len(got), len(expected))
        for line, (g, e) in enumerate(zip(got, expected)):
            self.assertEqual(g, e, f"input: {lines[line]}")

    def test_degraded_members_come_last(self) -> None:
        ids = [f"appliance-{i}" for i in range(3)]
        s = key_on(ids, ids[0])
        members = [fleet.FleetMember(i, "127.0.0.1", 7400, degraded=(i == ids[0])) for i in ids]
        with fleet.FleetClient(members, tenant=1) as fc:
            self.assertEqual(fc.placement(7, s)[-1], ids[0])
            fc.set_members([fleet.FleetMember(i, "127.0.0.1", 7400) for i in ids])
            self.assertEqual(fc.placement(7, s)[0], ids[0])

    def test_member_parsing(self) -> None:
        self.assertEqual(fleet.parse_member("10.0.0.1:7401"), fleet.FleetMember("10.0.0.1:7401", "10.0.0.1", 7401))
        self.assertEqual(fleet.parse_member("[::1]:7402").host, "::1")
        self.assertEqual(fleet.parse_member("host").port, 7400)
        with self.assertRaises(ValueError):
            fleet.parse_member("host:0")


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


class EtcdAnswer(unittest.TestCase):
    def test_range_answer_gives_the_serving_members(self) -> None:
        kvs = [
            ("/axon/members/a1", {"id": "a1", "axp": [{"address": "10.0.0.1", "port": 7401}], "health": "ok"}),
            ("/axon/members/a2", {"axp": [{"address": "10.0.0.2"}], "health": "degraded"}),
            ("/axon/members/a3", {"id": "a3", "axp": [{"address": "10.0.0.3"}], "health": "draining"}),
            ("/axon/members/a4", {"id": "a4", "axp": []}),
        ]
        body = {"header": {"revision": "3"}, "kvs": [{"key": b64(k), "value": b64(json.dumps(v))} for k, v in kvs]}
        body["kvs"].append({"key": b64("/axon/members/a5"), "value": b64("not json")})
        for k, v in [
            ("/axon/members/a6", {"id": "a6", "axp": [{"address": "10.0.0.6", "port": 7400}], "health": 6}),
            ("/axon/members/a7", {"id": 7, "axp": [{"address": "10.0.0.7", "port": "7400"}]}),
        ]:
            body["kvs"].append({"key": b64(k), "value": b64(json.dumps(v))})
        members = fleet.parse_etcd_members(json.dumps(body))
        self.assertEqual(
            members,
            [
                fleet.FleetMember("a1", "10.0.0.1", 7401),
                fleet.FleetMember("a2", "10.0.0.2", 7400, degraded=True),
                fleet.FleetMember("a6", "10.0.0.6", 7400),
            ],
        )
        self.assertEqual(fleet.parse_etcd_members('{"header": {}}'), [])
        with self.assertRaises(ValueError):
            fleet.parse_etcd_members('{"error": "denied", "code": 7}')


def key_on(ids: List[str], first: str) -> int:
    s = 1
    while owner(ids, fleet.fleet_key(1, 7, s)) != first:
        s += 1
    return s


class Failover(unittest.TestCase):
    def test_sync_worker_failed_then_silence_with_one_request_id(self) -> None:
        a_script = lambda h, p, n: ("error", ErrorCode.WORKER_FAILED, "gone") if p == b"one" else ("silent",)  # noqa: E731
        with FakeServer(a_script) as a, FakeServer() as b:
            ids = [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"]
            with fleet.FleetClient(ids, tenant=1, retry=FAST, member_timeout=0.5) as fc:
                s = key_on(ids, ids[0])
                r = fc.call(7, b"one", session_key=s, deadline=2.0)
                self.assertEqual(r.reply.payload, b"one")
                self.assertEqual(r.member, ids[1])
                self.assertEqual(r.members_tried, 2)
                self.assertEqual(a.messages[0].header.request_id, b.messages[0].header.request_id)
                self.assertEqual(fc.counters.member_down, 0)
                r = fc.call(7, b"two", session_key=s, deadline=2.0)
                self.assertEqual(r.member, ids[1])
                self.assertEqual(a.messages[-1].header.request_id, b.messages[-1].header.request_id)
                self.assertEqual(fc.counters.member_down, 1)
                self.assertEqual(fc.counters.failovers, 2)
                self.assertEqual(fc.placement(7, s), [ids[1], ids[0]])

    def test_sync_errors_are_explicit(self) -> None:
        with FakeServer(lambda h, p, n: ("silent",)) as a:
            with fleet.FleetClient([f"127.0.0.1:{a.port}"], tenant=1, retry=FAST) as fc:
                with self.assertRaises(ax.AxonTimeout):
                    fc.call(7, b"x", session_key=3, deadline=0.3)
                self.assertEqual(fc.counters.failed_calls, 1)
            with fleet.FleetClient([], tenant=1) as empty:
                with self.assertRaises(ax.AxonClientError):
                    empty.call(7, b"x")
        with FakeServer(lambda h, p, n: ("error", ErrorCode.HANDLER_ERROR, "no")) as a, FakeServer() as b:
            ids = [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"]
            with fleet.FleetClient(ids, tenant=1, retry=FAST) as fc:
                with self.assertRaises(ax.HandlerError):  # the handler's own answer: no failover
                    fc.call(7, b"x", session_key=key_on(ids, ids[0]))
                self.assertEqual(len(b.messages), 0)

    def test_asyncio_spreads_and_fails_over(self) -> None:
        async def run() -> None:
            with FakeServer(lambda h, p, n: ("silent",)) as a, FakeServer() as b, FakeServer() as c:
                ids = [f"127.0.0.1:{s.port}" for s in (a, b, c)]
                fc = await fleet.AsyncFleetClient.connect(ids, tenant=1, retry=FAST, member_timeout=1.0)
                try:
                    sessions = list(range(1, 61))
                    replies = await asyncio.gather(
                        *(fc.call(7, f"s{s}".encode(), session_key=s, deadline=3.0) for s in sessions)
                    )
                    for s, r in zip(sessions, replies):
                        self.assertEqual(r.reply.payload, f"s{s}".encode())
                        order = [ids[i] for i in fleet.rendezvous_order(ids, fleet.fleet_key(1, 7, s))]
                        # a never answers: its sessions go to their second choice, others stay.
                        self.assertEqual(r.member, order[1] if order[0] == ids[0] else order[0])
                    self.assertEqual({r.member for r in replies}, {ids[1], ids[2]})
                    self.assertEqual(fc.counters.member_down, 1)
                    self.assertGreaterEqual(fc.counters.failovers, 1)
                finally:
                    await fc.close()

        asyncio.run(run())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EtcdProcess:
    """A real etcd on loopback with a temporary data directory, killed by pid."""

    def __init__(self, binary: str) -> None:
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="axfc-etcd-")
        client, peer = _free_port(), _free_port()
        self.endpoint = f"http://127.0.0.1:{client}"
        peer_url = f"http://127.0.0.1:{peer}"
        self.log = open(os.path.join(self.dir, "etcd.log"), "wb")
        self.proc = subprocess.Popen(
            [binary, "--name", "axfc", "--data-dir", os.path.join(self.dir, "data"),
             "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
             "--initial-cluster", f"axfc={peer_url}"],
            stdout=self.log, stderr=self.log,
        )  # fmt: skip
        end = time.monotonic() + 20
        while time.monotonic() < end:
            try:
                self.put("/axfc/ready", "1")
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("etcd did not come up")

    def _post(self, path: str, body: dict) -> dict:
        import urllib.request

        req = urllib.request.Request(self.endpoint + path, data=json.dumps(body).encode())
        with urllib.request.urlopen(req, timeout=1) as r:
            return json.loads(r.read())

    def put(self, key: str, value: str, lease: str = "0") -> None:
        self._post("/v3/kv/put", {"key": b64(key), "value": b64(value), "lease": lease})

    def grant(self, ttl: int) -> str:
        return str(self._post("/v3/lease/grant", {"TTL": ttl})["ID"])

    def revoke(self, lease: str) -> None:
        self._post("/v3/lease/revoke", {"ID": lease})

    def delete(self, key: str) -> None:
        self._post("/v3/kv/deleterange", {"key": b64(key)})

    def stop(self) -> None:
        import shutil

        self.proc.kill()
        self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def member_json(mid: str, port: int, health: str = "ok") -> str:
    return json.dumps({"id": mid, "axp": [{"address": "127.0.0.1", "port": port}], "health": health,
                       "api": "https://127.0.0.1:9443", "capacity": {}, "config_revision": 1,
                       "started_unix_ms": 1})  # fmt: skip


def wait_for(cond, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())


@unittest.skipUnless(__import__("shutil").which("etcd"), "etcd is not installed (apt-get install etcd-server)")
class EtcdSource(unittest.TestCase):
    def setUp(self) -> None:
        self.etcd = EtcdProcess(__import__("shutil").which("etcd"))

    def tearDown(self) -> None:
        self.etcd.stop()

    def test_sync_member_list_follows_etcd(self) -> None:
        self.etcd.put("/axon/members/a1", member_json("a1", 7401))
        self.etcd.put("/axon/other/x", member_json("x", 7409))
        with fleet.FleetClient(tenant=1, etcd_endpoints=["http://127.0.0.1:1", self.etcd.endpoint],
                               poll_interval=0.1) as fc:  # fmt: skip
            ids = lambda: sorted(m.info.id for m in fc._fleet.members)  # noqa: E731
            self.assertEqual(ids(), ["a1"])
            self.etcd.put("/axon/members/a2", member_json("a2", 7402))
            self.assertTrue(wait_for(lambda: ids() == ["a1", "a2"]), ids())
            self.etcd.put("/axon/members/a1", member_json("a1", 7401, "draining"))
            self.assertTrue(wait_for(lambda: ids() == ["a2"]), ids())
            self.etcd.delete("/axon/members/a2")
            self.assertTrue(wait_for(lambda: ids() == []), ids())

    def test_asyncio_member_list_follows_etcd(self) -> None:
        async def run() -> None:
            self.etcd.put("/axon/members/b1", member_json("b1", 7401))
            fc = await fleet.AsyncFleetClient.connect(tenant=1, etcd_endpoints=[self.etcd.endpoint], poll_interval=0.1)
            try:
                ids = lambda: sorted(m.info.id for m in fc._fleet.members)  # noqa: E731
                self.assertEqual(ids(), ["b1"])
                self.etcd.put("/axon/members/b2", member_json("b2", 7402))
                end = time.monotonic() + 10
                while ids() != ["b1", "b2"] and time.monotonic() < end:
                    await asyncio.sleep(0.02)
                self.assertEqual(ids(), ["b1", "b2"])
            finally:
                await fc.close()

        asyncio.run(run())

    def test_sync_watch_sees_changes_without_waiting_for_the_poll(self) -> None:
        # poll_interval is far longer than the test: only the watch can see these in time.
        lease = self.etcd.grant(60)
        self.etcd.put("/axon/members/w1", member_json("w1", 7401))
        self.etcd.put("/axon/members/w2", member_json("w2", 7402), lease=lease)
        start = time.monotonic()
        with fleet.FleetClient(tenant=1, etcd_endpoints=[self.etcd.endpoint], poll_interval=30.0) as fc:
            ids = lambda: sorted(m.info.id for m in fc._fleet.members)  # noqa: E731
            self.assertEqual(ids(), ["w1", "w2"])
            self.etcd.put("/axon/members/w3", member_json("w3", 7403))
            self.assertTrue(wait_for(lambda: ids() == ["w1", "w2", "w3"], 5.0), ids())
            self.etcd.delete("/axon/members/w1")
            self.assertTrue(wait_for(lambda: ids() == ["w2", "w3"], 5.0), ids())
            self.etcd.revoke(lease)  # an expired lease deletes its key the same way
            self.assertTrue(wait_for(lambda: ids() == ["w3"], 5.0), ids())
            self.assertEqual(fc.counters.etcd_errors, 0)
        self.assertLess(time.monotonic() - start, 30.0, "close() must not wait for the poll interval")

    def test_asyncio_watch_sees_a_delete_without_waiting_for_the_poll(self) -> None:
        async def run() -> None:
            self.etcd.put("/axon/members/v1", member_json("v1", 7401))
            self.etcd.put("/axon/members/v2", member_json("v2", 7402))
            fc = await fleet.AsyncFleetClient.connect(tenant=1, etcd_endpoints=[self.etcd.endpoint], poll_interval=30.0)
            try:
                ids = lambda: sorted(m.info.id for m in fc._fleet.members)  # noqa: E731
                self.assertEqual(ids(), ["v1", "v2"])
                self.etcd.delete("/axon/members/v1")
                end = time.monotonic() + 5
                while ids() != ["v2"] and time.monotonic() < end:
                    await asyncio.sleep(0.02)
                self.assertEqual(ids(), ["v2"])
            finally:
                await fc.close()

        asyncio.run(run())

    def test_no_endpoint_answers(self) -> None:
        with self.assertRaises(ConnectionError):
            fleet.FleetClient(tenant=1, etcd_endpoints=["http://127.0.0.1:1"])


class Example(unittest.TestCase):
    def test_fleet_echo_example_spreads_sessions(self) -> None:
        example = Path(__file__).resolve().parents[1] / "examples" / "fleet_echo.py"
        with FakeServer() as a, FakeServer() as b:
            members = [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"]
            env = dict(os.environ, PYTHONPATH=str(example.parents[1]))
            out = subprocess.run(
                [sys.executable, str(example), "--member", members[0], "--member", members[1], "--tenant", "1",
                 "--agent", "7", "--sessions", "20"],
                capture_output=True, text=True, timeout=60, env=env,
            )  # fmt: skip
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        for m in members:
            self.assertIn(f"{m} (members tried: 1)", out.stdout)
        self.assertEqual(len(a.messages) + len(b.messages), 20)


class Baseline:
    """An axon-baseline-server on 127.0.0.1 (port 0: it picks), killed by pid."""

    def __init__(self, binary: str, port: int = 0) -> None:
        self.proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--workers", "1", "--tenants", "1",
             "--agents", "1-10", "--duration", "60"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"unexpected banner {line!r}")
        self.port = int(m.group(1))

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@unittest.skipUnless(os.environ.get("AXON_BASELINE_SERVER"), "AXON_BASELINE_SERVER not set (ctest sets it)")
class AgainstRealServers(unittest.TestCase):
    def setUp(self) -> None:
        binary = os.environ["AXON_BASELINE_SERVER"]
        self.servers = [Baseline(binary) for _ in range(3)]
        self.ids = [f"127.0.0.1:{s.port}" for s in self.servers]

    def tearDown(self) -> None:
        for s in self.servers:
            s.stop()

    def check_after_kill(self, home: Dict[int, str], after: Dict[int, object]) -> None:
        dead = self.ids[1]
        for s, r in after.items():
            self.assertIsInstance(r, fleet.FleetReply, f"session {s}: {r!r}")  # explicit errors only
            assert isinstance(r, fleet.FleetReply)
            if home[s] == dead:
                self.assertNotEqual(r.member, dead)
            else:
                self.assertEqual(r.member, home[s], f"session {s} moved though its member lives")

    def test_sync_kill9_moves_only_its_sessions(self) -> None:
        with fleet.FleetClient(self.ids, tenant=1, member_timeout=1.0) as fc:
            home = {s: fc.call(7, b"x", session_key=s, deadline=3.0).member for s in range(1, 121)}
            self.assertEqual(set(home.values()), set(self.ids))
            self.servers[1].kill9()
            after: Dict[int, object] = {}
            for s in home:
                try:
                    after[s] = fc.call(7, f"{s}".encode(), session_key=s, deadline=3.0)
                except ax.AxonClientError as e:
                    after[s] = e
            self.check_after_kill(home, after)
            self.assertEqual(fc.counters.member_down, 1)

    def test_asyncio_kill9_moves_only_its_sessions(self) -> None:
        async def run() -> None:
            fc = await fleet.AsyncFleetClient.connect(self.ids, tenant=1, member_timeout=1.0)
            try:
                sessions = range(1, 121)
                first = await asyncio.gather(*(fc.call(7, b"x", session_key=s, deadline=3.0) for s in sessions))
                home = {s: r.member for s, r in zip(sessions, first)}
                self.assertEqual(set(home.values()), set(self.ids))
                self.servers[1].kill9()
                results = await asyncio.gather(
                    *(fc.call(7, f"{s}".encode(), session_key=s, deadline=3.0) for s in sessions),
                    return_exceptions=True,
                )
                self.check_after_kill(home, dict(zip(sessions, results)))
                self.assertEqual(fc.counters.member_down, 1)
            finally:
                await fc.close()

        asyncio.run(run())


if __name__ == "__main__":
    unittest.main()
