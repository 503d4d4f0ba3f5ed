"""The synchronous AXP client: one UDP socket, one request at a time (calls from several
threads are serialised; use AsyncClient for many requests in flight)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Optional, Tuple, Union

from .exchange import EventHook, Exchange, Reply, RetryPolicy, TraceContext
from .protocol import (
    DEFAULT_PORT,
    DEFAULT_SEGMENT_PAYLOAD_IPV4,
    DEFAULT_SEGMENT_PAYLOAD_IPV6,
    MAX_MESSAGE_LEN,
    Priority,
)

_RECV_SIZE = MAX_MESSAGE_LEN + 1024  # one datagram: at most a 512-byte header and 64 KiB


def resolve(host: str, port: int) -> Tuple[int, tuple]:
    """(family, sockaddr) of the appliance: the first UDP address getaddrinfo() gives."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"cannot resolve {host!r}")
    family, _, _, _, addr = infos[0]
    return family, addr


def default_segment_payload(family: int) -> int:
    """The largest segment payload that keeps a datagram within a 1500-byte MTU (§1)."""
    return DEFAULT_SEGMENT_PAYLOAD_IPV6 if family == socket.AF_INET6 else DEFAULT_SEGMENT_PAYLOAD_IPV4


def open_socket(family: int, addr: tuple, sock: Optional[socket.socket]) -> socket.socket:
    """A UDP socket connected to the appliance (so the kernel only hands us its datagrams),
    with DF set on IPv4 (§1: no IP fragmentation) and room for a burst of reply segments."""
    s = sock if sock is not None else socket.socket(family, socket.SOCK_DGRAM)
    if s.family == socket.AF_INET and hasattr(socket, "IP_MTU_DISCOVER"):
        try:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MTU_DISCOVER, socket.IP_PMTUDISC_DO)
        except OSError:
            pass
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    except OSError:
        pass
    s.connect(addr)
    return s


class Client:
    """A synchronous AXP client for one appliance address and one tenant.

    >>> with Client("10.0.0.1", tenant=1) as c:
    ...     c.request(agent=42, payload=b'{"tool": "search", "q": "axon"}', deadline=0.5)

    Parameters:
      host, port: the appliance (port 7400 by default); or pass an already made UDP `sock`
        (bound or not, e.g. created inside another network namespace), which is connected to
        (host, port) and owned (closed) by the client from then on.
      tenant: the tenant id the operator assigned.
      retry: the RetryPolicy (timeouts, backoff, retry budget).
      max_segment_payload: largest payload per datagram; requests above it are segmented
        (§6). Default: what fits a 1500-byte MTU for the address family (1392 B IPv4, 1372 B IPv6).
      on_event: called with an Event for every send, timeout, BUSY and retried ERROR.
    """

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        tenant: int,
        retry: RetryPolicy = RetryPolicy(),
        max_segment_payload: Optional[int] = None,
        sock: Optional[socket.socket] = None,
        on_event: Optional[EventHook] = None,
    ) -> None:
        family, self.address = resolve(host, port)
        if sock is not None and sock.family != family:
            raise ValueError(f"the socket's family {sock.family!r} does not match {host!r}")
        self.tenant = tenant
        self.retry = retry
        self.max_segment_payload = max_segment_payload or default_segment_payload(family)
        self.on_event = on_event
        self._sock = open_socket(family, self.address, sock)
        self._lock = threading.Lock()

    def request(
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
        """Runs `agent`'s handler on `payload` and returns the reply's payload.

        priority: Priority.INTERACTIVE (default) or Priority.BACKGROUND.
        deadline: total time budget in seconds for the whole call, retries included; also
          sent as the header's deadline_us (the budget left at each attempt), so the
          appliance answers ERROR deadline_exceeded instead of running late work.
        session_key: sticky routing (same key, same worker while it lives); 0 = none.
        trace: W3C trace context to continue (TraceContext.from_traceparent(...)); None = none.
        idempotent: False disables retries after timeouts and retryable ERRORs (a BUSY is
          still retried: such a request never reached a worker).

        Raises AxonTimeout, AxonBusy or the AxonErrorReply subclass of the ERROR's code.
        """
        return self.call(
            agent,
            payload,
            priority=priority,
            deadline=deadline,
            session_key=session_key,
            trace=trace,
            idempotent=idempotent,
            retry=retry,
        ).payload

    def call(
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
        with self._lock:
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
                now=time.monotonic(),
                request_id=request_id,
                on_event=self.on_event,
            )
            while True:
                datagrams, wait = ex.tick(time.monotonic())
                for d in datagrams:
                    self._sock.send(d)
                self._sock.settimeout(max(wait, 1e-4))
                try:
                    got = self._sock.recv(_RECV_SIZE)
                except socket.timeout:
                    continue
                except ConnectionRefusedError:
                    continue  # ICMP port unreachable: nothing listens (yet); a timeout decides
                if ex.feed(got, time.monotonic()):
                    return ex.result()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
