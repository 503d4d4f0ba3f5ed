"""axon_client's sync and asyncio clients against the fake AXP server of fake_server.py on
loopback: segmentation both ways, timeouts retried with the same request id and exponential
backoff, the retry budget, BUSY honoured, typed ERRORs and the deadline. (The real data plane
is in test_dataplane_it.py.)"""

from __future__ import annotations

import asyncio
import sys
import time
import unittest
from pathlib import Path
from typing import List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import axon_client as ax  # noqa: E402
from axon_client.exchange import Exchange  # noqa: E402
from axon_client.protocol import parse  # noqa: E402
from fake_server import FakeServer  # noqa: E402

FAST = ax.RetryPolicy(attempt_timeout=0.1, backoff_initial=0.02, backoff_multiplier=2.0, backoff_max=0.5, max_attempts=4)


def pattern(n: int, seed: int = 0) -> bytes:
    return bytes((seed + i * 31 + (i >> 8)) & 0xFF for i in range(n))


class ExchangeTest(unittest.TestCase):
    """The state machine alone, on a made-up clock: exact times, no sockets."""

    def make(self, **kw: object) -> Exchange:
        args = dict(
            tenant_id=1,
            agent_id=7,
            payload=b"x",
            priority=0,
            session_key=0,
            trace=None,
            deadline=None,
            idempotent=True,
            policy=FAST,
            max_segment_payload=1392,
            now=100.0,
        )
        args.update(kw)
        return Exchange(**args)  # type: ignore[arg-type]

    def test_timeouts_back_off_exponentially_with_the_same_id(self) -> None:
        ex = self.make()
        sends: List[float] = []
        ids = set()
        now = 100.0
        with self.assertRaises(ax.AxonTimeout) as caught:
            for _ in range(100):
                out, wait = ex.tick(now)
                if out:
                    sends.append(now)
                    ids.update(parse(d)[1].request_id for d in out)  # type: ignore[union-attr]
                now += wait
        self.assertEqual(ids, {ex.request_id})
        self.assertEqual(caught.exception.attempts, 4)
        gaps = [round(b - a, 6) for a, b in zip(sends, sends[1:])]
        # attempt timeout 0.1 s, then backoff 0.02, 0.04, 0.08 s
        self.assertEqual(gaps, [0.12, 0.14, 0.18])

    def test_busy_waits_retry_after_then_raises_busy_when_the_budget_is_spent(self) -> None:
        ex = self.make()
        out, _ = ex.tick(100.0)
        busy = parse(out[0])[1]
        from dataclasses import replace

        datagram = replace(busy, type=ax.MessageType.BUSY, retry_after_us=30000, payload_len=0, message_len=0).encode()  # type: ignore[arg-type]
        self.assertFalse(ex.feed(datagram, 100.001))
        out, wait = ex.tick(100.001)
        self.assertEqual(out, [])
        self.assertAlmostEqual(wait, 0.03)
        self.assertEqual(ex.tick(100.02)[0], [])  # not before retry_after
        self.assertEqual(len(ex.tick(100.031)[0]), 1)
        for t in (100.04, 100.05, 100.06):
            if ex.feed(datagram, t):
                break
            ex.tick(t + 0.031)
        with self.assertRaises(ax.AxonBusy) as caught:
            ex.result()
        self.assertEqual(caught.exception.retry_after_us, 30000)
        self.assertEqual(caught.exception.attempts, 4)

    def test_deadline_is_sent_as_the_budget_left(self) -> None:
        ex = self.make(deadline=0.5)
        out, _ = ex.tick(100.0)
        self.assertEqual(parse(out[0])[1].deadline_us, 500000)  # type: ignore[union-attr]
        _, wait = ex.tick(100.1)  # first timeout
        out, _ = ex.tick(100.1 + wait)
        self.assertEqual(parse(out[0])[1].deadline_us, 380000)  # type: ignore[union-attr]
        with self.assertRaises(ax.AxonTimeout):
            ex.tick(100.5)

    def test_a_segmented_message_keeps_its_header_across_attempts(self) -> None:
        # §6: segments that differ (deadline_us included) from a partial message the appliance
        # holds are dropped with it; so every attempt repeats the first one's header.
        ex = self.make(deadline=0.5, payload=bytes(3000))
        first, wait = ex.tick(100.0)
        self.assertEqual(len(first), 3)
        out, wait = ex.tick(100.0 + wait)  # the first timeout
        second, _ = ex.tick(100.0 + 0.1 + wait)
        self.assertEqual(second, first)
        self.assertEqual({parse(d)[1].deadline_us for d in second}, {500000})  # type: ignore[union-attr]

    def test_not_idempotent_sends_once(self) -> None:
        ex = self.make(idempotent=False, deadline=1.0)
        now, sends = 100.0, 0
        with self.assertRaises(ax.AxonTimeout):
            for _ in range(100):
                out, wait = ex.tick(now)
                sends += len(out)
                now += wait
        self.assertEqual(sends, 1)
        self.assertAlmostEqual(now, 101.0)  # listened for a late reply until the deadline


class SyncClientTest(unittest.TestCase):
    def test_echo_small_and_segmented_both_ways(self) -> None:
        with FakeServer(reply_segment=900) as server, ax.Client(server.host, server.port, tenant=1) as client:
            self.assertEqual(client.request(7, b"hello"), b"hello")
            big = pattern(65536, 3)
            reply = client.call(7, big, priority=ax.Priority.BACKGROUND, session_key=99)
            self.assertEqual(reply.payload, big)  # reply came as 73 shuffled segments + duplicates
            self.assertEqual(reply.attempts, 1)
            segs = [d for d in server.datagrams if d.header.request_id == reply.request_id]
            self.assertEqual(len(segs), 48)  # ceil(65536 / 1392)
            self.assertTrue(all(len(d.payload) <= 1392 for d in segs))
            self.assertEqual({(d.header.priority, d.header.session_key) for d in segs}, {(1, 99)})

    def test_segment_size_is_configurable(self) -> None:
        with FakeServer() as server, ax.Client(server.host, server.port, tenant=1, max_segment_payload=500) as client:
            self.assertEqual(client.request(7, pattern(1600)), pattern(1600))
            self.assertEqual([len(d.payload) for d in server.datagrams], [400, 400, 400, 400])

    def test_timeout_retries_reuse_the_request_id(self) -> None:
        # Silent to the first two attempts, answers the third.
        script = lambda h, p, n: ("silent",) if n < 2 else ("echo",)  # noqa: E731
        events: List[ax.Event] = []
        with FakeServer(script) as server, ax.Client(
            server.host, server.port, tenant=1, retry=FAST, on_event=events.append
        ) as client:
            reply = client.call(7, pattern(3000))
            self.assertEqual(reply.payload, pattern(3000))
            self.assertEqual(reply.attempts, 3)
            self.assertEqual({m.header.request_id for m in server.messages}, {reply.request_id})
            self.assertEqual(len(server.messages), 3)
            sends = [e.at for e in events if e.kind == "send"]
            self.assertEqual([e.kind for e in events], ["send", "timeout", "send", "timeout", "send"])
            # Each retry waited the attempt timeout plus the growing backoff.
            self.assertGreaterEqual(sends[1] - sends[0], 0.1 + 0.02)
            self.assertGreaterEqual(sends[2] - sends[1], 0.1 + 0.04)

    def test_retry_budget_then_timeout(self) -> None:
        with FakeServer(lambda h, p, n: ("silent",)) as server, ax.Client(
            server.host, server.port, tenant=1, retry=FAST
        ) as client:
            with self.assertRaises(ax.AxonTimeout) as caught:
                client.request(7, b"x")
            self.assertEqual(caught.exception.attempts, 4)
            self.assertEqual(len(server.messages), 4)
            self.assertEqual(len({m.header.request_id for m in server.messages}), 1)

    def test_busy_is_honoured(self) -> None:
        script = lambda h, p, n: ("busy", 150000) if n < 2 else ("echo",)  # noqa: E731
        with FakeServer(script) as server, ax.Client(server.host, server.port, tenant=1, retry=FAST) as client:
            reply = client.call(7, b"q")
            self.assertEqual((reply.payload, reply.busy_replies, reply.attempts), (b"q", 2, 3))
            times = [m.at for m in server.messages]
            self.assertGreaterEqual(times[1] - times[0], 0.15)
            self.assertGreaterEqual(times[2] - times[1], 0.15)

    def test_busy_until_the_budget_is_spent(self) -> None:
        with FakeServer(lambda h, p, n: ("busy", 1000)) as server, ax.Client(
            server.host, server.port, tenant=1, retry=FAST
        ) as client:
            with self.assertRaises(ax.AxonBusy) as caught:
                client.request(7, b"q")
            self.assertEqual((caught.exception.retry_after_us, caught.exception.attempts), (1000, 4))

    def test_errors_are_typed(self) -> None:
        codes = {b"a": 4, b"h": 9, b"t": 10, b"z": 77}
        with FakeServer(lambda h, p, n: ("error", codes[p], "why")) as server, ax.Client(
            server.host, server.port, tenant=1, retry=FAST
        ) as client:
            with self.assertRaises(ax.UnknownAgent):
                client.request(7, b"a")
            with self.assertRaises(ax.HandlerError) as caught:
                client.request(7, b"h")
            self.assertEqual((caught.exception.code, caught.exception.code_name, caught.exception.detail), (9, "handler_error", "why"))
            with self.assertRaises(ax.UnknownTenant):
                client.request(7, b"t")
            with self.assertRaises(ax.InternalError) as unknown:
                client.request(7, b"z")
            self.assertEqual(unknown.exception.code, 77)
            self.assertEqual(len(server.messages), 4)  # none retried

    def test_worker_failed_is_retried_after_retry_after_when_idempotent(self) -> None:
        script = lambda h, p, n: ("error", 6, "") if n == 0 else ("echo",)  # noqa: E731
        with FakeServer(script) as server, ax.Client(server.host, server.port, tenant=1, retry=FAST) as client:
            self.assertEqual(client.request(7, b"i"), b"i")
            with self.assertRaises(ax.WorkerFailed):
                client.request(7, b"n", idempotent=False)

    def test_deadline_bounds_the_call_and_is_sent(self) -> None:
        with FakeServer(lambda h, p, n: ("silent",)) as server, ax.Client(
            server.host, server.port, tenant=1, retry=ax.RetryPolicy(attempt_timeout=10)
        ) as client:
            started = time.monotonic()
            with self.assertRaises(ax.AxonTimeout):
                client.request(7, b"d", deadline=0.3)
            self.assertGreaterEqual(time.monotonic() - started, 0.3)
            budget = server.messages[0].header.deadline_us
            self.assertTrue(0 < budget <= 300000, budget)

    def test_trace_context_is_sent_and_the_reply_span_returned(self) -> None:
        trace = ax.TraceContext.from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        with FakeServer() as server, ax.Client(server.host, server.port, tenant=1) as client:
            reply = client.call(7, b"t", trace=trace)
            h = server.messages[0].header
            self.assertEqual((h.trace_id, h.span_id, h.trace_flags), (trace.trace_id, trace.span_id, 1))
            self.assertEqual(reply.trace_id, trace.trace_id)

    def test_ipv6(self) -> None:
        import socket

        with FakeServer(family=socket.AF_INET6) as server, ax.Client(server.host, server.port, tenant=1) as client:
            self.assertEqual(client.max_segment_payload, 1372)
            self.assertEqual(client.request(7, pattern(5000)), pattern(5000))


class AsyncClientTest(unittest.TestCase):
    def test_concurrent_requests_segmented_retried_and_typed(self) -> None:
        def script(h, p, n):  # type: ignore[no-untyped-def]
            if p.startswith(b"err"):
                return ("error", 9, "tool failed")
            if p.startswith(b"slow") and n == 0:
                return ("silent",)
            if p.startswith(b"busy") and n == 0:
                return ("busy", 100000)
            return ("echo",)

        async def main(server: FakeServer) -> None:
            events: List[ax.Event] = []
            async with await ax.AsyncClient.connect(
                server.host, server.port, tenant=1, retry=FAST, on_event=events.append
            ) as client:
                payloads = [b"slow" + pattern(5000, 1), b"busy-1", pattern(20000, 2), b"plain"]
                replies = await asyncio.gather(*(client.call(7, p) for p in payloads))
                self.assertEqual([r.payload for r in replies], payloads)
                self.assertEqual(replies[0].attempts, 2)  # retried after a timeout
                self.assertEqual(replies[1].busy_replies, 1)
                with self.assertRaises(ax.HandlerError):
                    await client.request(7, b"err")
                busy = [e for e in events if e.kind == "busy"]
                resend = [e for e in events if e.kind == "send" and e.request_id == busy[0].request_id][1]
                self.assertGreaterEqual(resend.at - busy[0].at, 0.1)
                with self.assertRaises(ax.AxonTimeout):
                    await client.request(7, b"slow", idempotent=False, deadline=0.2)

        with FakeServer(script, reply_segment=1200) as server:
            asyncio.run(main(server))


if __name__ == "__main__":
    unittest.main()
