"""The asyncio AXP client: one UDP socket, any number of requests in flight, each matched to
its replies by request id. Same features and parameters as the synchronous Client."""

from __future__ import annotations

import asyncio
import socket
from typing import Dict, Optional, Union

from .client import default_segment_payload, open_socket, resolve
from .exchange import EventHook, Exchange, Reply, RetryPolicy, TraceContext, new_request_id
from .protocol import DEFAULT_PORT, HEADER_LEN, Priority

_REQUEST_ID = slice(32, 40)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: "AsyncClient") -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: object) -> None:
        if len(data) < HEADER_LEN:
            return
        queue = self._owner._pending.get(int.from_bytes(data[_REQUEST_ID], "big"))
        if queue is not None:
            queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors (nothing listening yet): the affected requests time out and retry


class AsyncClient:
    """An asyncio AXP client for one appliance address and one tenant.

        client = await AsyncClient.connect("10.0.0.1", tenant=1)
        replies = await asyncio.gather(*(client.request(42, q) for q in queries))
        client.close()

    Parameters as for Client. request()/call() are coroutines and may run concurrently.
    """

    def __init__(self) -> None:
        raise TypeError("use `await AsyncClient.connect(...)`")

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        tenant: int,
        retry: RetryPolicy = RetryPolicy(),
        max_segment_payload: Optional[int] = None,
        sock: Optional[socket.socket] = None,
        on_event: Optional[EventHook] = None,
    ) -> "AsyncClient":
        self = cls.__new__(cls)
        family, self.address = resolve(host, port)
        if sock is not None and sock.family != family:
            raise ValueError(f"the socket's family {sock.family!r} does not match {host!r}")
        self.tenant = tenant
        self.retry = retry
        self.max_segment_payload = max_segment_payload or default_segment_payload(family)
        self.on_event = on_event
        self._pending: Dict[int, asyncio.Queue[bytes]] = {}
        s = open_socket(family, self.address, sock)
        s.setblocking(False)
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=s)
        return self

    async def request(
        self,
        agent: int,
        payload: Union[bytes, bytearray, memoryview, str],
        *,
        priority: Union[Priority, int] = Priority.INTERACTIVE,
        deadline: Optional[float] = None,
        session_key: int = 0,
        trace: Optional[TraceContext] = None,
        idempotent: bool = True,
        retry: Optional[RetryPolicy] = None,
    ) -> bytes:
        """Runs `agent`'s handler on `payload` and returns the reply's payload (see Client.request)."""
        reply = await self.call(
            agent,
            payload,
            priority=priority,
            deadline=deadline,
            session_key=session_key,
            trace=trace,
            idempotent=idempotent,
            retry=retry,
        )
        return reply.payload

    async def call(
        self,
        agent: int,
        payload: Union[bytes, bytearray, memoryview, str],
        *,
        priority: Union[Priority, int] = Priority.INTERACTIVE,
        deadline: Optional[float] = None,
        session_key: int = 0,
        trace: Optional[TraceContext] = None,
        idempotent: bool = True,
        retry: Optional[RetryPolicy] = None,
        request_id: Optional[int] = None,
    ) -> Reply:
        """Like request(), but returns the whole Reply (payload, attempts, BUSY count, span)."""
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        rid = request_id if request_id is not None else new_request_id()
        while request_id is None and rid in self._pending:
            rid = new_request_id()
        if rid in self._pending:
            raise ValueError(f"request id {rid:#x} is already in flight on this client")
        loop = self._loop
        ex = Exchange(
            tenant_id=self.tenant,
            agent_id=agent,
            payload=data,
            priority=priority,
            session_key=session_key,
            trace=trace,
            deadline=deadline,
            idempotent=idempotent,
            policy=retry or self.retry,
            max_segment_payload=self.max_segment_payload,
            now=loop.time(),
            request_id=rid,
            on_event=self.on_event,
        )
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._pending[rid] = queue
        try:
            while True:
                datagrams, wait = ex.tick(loop.time())
                for d in datagrams:
                    self._transport.sendto(d)
                try:
                    got = await asyncio.wait_for(queue.get(), timeout=max(wait, 1e-4))
                except asyncio.TimeoutError:
                    continue
                if ex.feed(got, loop.time()):
                    return ex.result()
        finally:
            del self._pending[rid]

    def close(self) -> None:
        self._transport.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
