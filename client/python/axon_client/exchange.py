"""The client's state machine for one request, without I/O: which datagrams to send when, what
a reply means, when to retry with the same request id and when to give up.

The synchronous and the asyncio client drive the same Exchange, so both behave alike:

    ex = Exchange(...)
    while True:
        datagrams, wait = ex.tick(now())      # raises AxonTimeout / AxonBusy when out of budget
        send every datagram; receive for at most `wait` seconds
        if a datagram for ex.request_id came: if ex.feed(datagram, now()): return ex.result()
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, replace
from typing import Callable, List, Optional, Tuple

from .errors import AxonBusy, AxonClientError, AxonTimeout, error_for
from .protocol import ErrorCode, Header, MessageType, Priority, Reassembly, Reason, encode_message, parse


@dataclass(frozen=True)
class RetryPolicy:
    """When to resend a request (always with the same request id) and when to give up.

    - `attempt_timeout`: seconds to wait for a reply to one attempt before a retry is due;
    - `backoff_initial`, `backoff_multiplier`, `backoff_max`: after the k-th timed-out attempt
      (k = 1, 2, ...) the client waits a further min(initial * multiplier**(k-1), max) seconds,
      still accepting a late reply, before it resends;
    - `max_attempts`: the retry budget, counting every datagram set sent for the request (the
      first attempt, retries after timeouts and retries after BUSY);
    - `retry_errors`: also retry ERROR `overloaded` and `worker_failed` after their
      `retry_after_us` (only for idempotent requests; see Client.request()).
    A BUSY is always retried (the request never reached a worker), after at least its
    `retry_after_us`.
    """

    attempt_timeout: float = 0.5
    backoff_initial: float = 0.05
    backoff_multiplier: float = 2.0
    backoff_max: float = 1.0
    max_attempts: int = 4
    retry_errors: bool = True

    def backoff(self, timeouts: int) -> float:
        """Extra wait after the `timeouts`-th timed-out attempt (1-based)."""
        return min(self.backoff_initial * self.backoff_multiplier ** max(0, timeouts - 1), self.backoff_max)


@dataclass(frozen=True)
class TraceContext:
    """W3C trace context for a request: the caller's trace id (16 bytes) and span id (8 bytes)."""

    trace_id: bytes
    span_id: bytes
    sampled: bool = True

    @classmethod
    def new(cls, sampled: bool = True) -> "TraceContext":
        """A fresh random trace with a fresh root span."""
        return cls(_nonzero(16), _nonzero(8), sampled)

    @classmethod
    def from_traceparent(cls, traceparent: str) -> "TraceContext":
        """Parses `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`."""
        parts = traceparent.strip().split("-")
        if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2:
            raise ValueError(f"not a W3C traceparent: {traceparent!r}")
        return cls(bytes.fromhex(parts[1]), bytes.fromhex(parts[2]), bool(int(parts[3], 16) & 1))

    def traceparent(self) -> str:
        return f"00-{self.trace_id.hex()}-{self.span_id.hex()}-{'01' if self.sampled else '00'}"

    def __post_init__(self) -> None:
        if len(self.trace_id) != 16 or len(self.span_id) != 8:
            raise ValueError("trace_id must be 16 bytes and span_id 8 bytes")


def _nonzero(n: int) -> bytes:
    while True:
        b = os.urandom(n)
        if any(b):
            return b


@dataclass(frozen=True)
class Reply:
    """A RESPONSE: its payload, and what it took to get it."""

    payload: bytes
    request_id: int
    attempts: int  # datagram sets sent (1 = no retry)
    busy_replies: int  # BUSY replies met on the way
    trace_id: bytes  # echoed from the request
    span_id: bytes  # the responder's span (child of the request's span), zero without trace context


@dataclass(frozen=True)
class Event:
    """What happened during an exchange, for logging and tests (Client(on_event=...)).

    kind: "send" (attempt = its number), "timeout" (no reply to an attempt), "busy"
    (retry_after_us set), "retry_error" (a retryable ERROR, code set). `at` is time.monotonic().
    """

    kind: str
    request_id: int
    attempt: int
    at: float
    retry_after_us: int = 0
    code: int = 0


EventHook = Callable[[Event], None]

_RETRYABLE_ERRORS = (ErrorCode.OVERLOADED, ErrorCode.WORKER_FAILED)


def new_request_id() -> int:
    """A random non-zero 64-bit request id (§5: unique among a client's outstanding requests)."""
    return secrets.randbits(64) or 1


class Exchange:
    """One request and its retries (see the module docstring for the driving loop)."""

    def __init__(
        self,
        *,
        tenant_id: int,
        agent_id: int,
        payload: bytes,
        priority: int,
        session_key: int,
        trace: Optional[TraceContext],
        deadline: Optional[float],
        idempotent: bool,
        policy: RetryPolicy,
        max_segment_payload: int,
        now: float,
        request_id: Optional[int] = None,
        on_event: Optional[EventHook] = None,
    ) -> None:
        if not 0 <= agent_id <= 0xFFFFFFFF or not 0 <= tenant_id <= 0xFFFFFFFF:
            raise ValueError("tenant and agent ids are 32-bit unsigned")
        if not 0 <= session_key <= 0xFFFFFFFFFFFFFFFF:
            raise ValueError("session_key is 64-bit unsigned")
        if deadline is not None and deadline <= 0:
            raise ValueError("deadline is a positive number of seconds (None: no deadline)")
        if policy.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        self.request_id = request_id if request_id is not None else new_request_id()
        self._payload = bytes(payload)
        self._header = Header(
            type=MessageType.REQUEST,
            priority=Priority(priority),
            trace_flags=(1 if trace.sampled else 0) if trace else 0,
            tenant_id=tenant_id,
            agent_id=agent_id,
            session_key=session_key,
            request_id=self.request_id,
            trace_id=trace.trace_id if trace else bytes(16),
            span_id=trace.span_id if trace else bytes(8),
        )
        # Fails now, not on the first send, for a payload the protocol cannot carry.
        encode_message(self._header, b"", max_segment_payload)
        if len(self._payload) > 65536:
            raise ValueError(f"an AXP message carries at most 65536 payload bytes, not {len(self._payload)}")
        self._max_segment = max_segment_payload
        self._segmented = len(self._payload) > max_segment_payload
        self._first_deadline_us: Optional[int] = None
        self._idempotent = idempotent
        self._policy = policy
        self._on_event = on_event
        self._deadline_at = now + deadline if deadline is not None else None
        self.attempts = 0
        self._timeouts = 0
        self._busy = 0
        self._last_busy_us = 0
        self._send_at: Optional[float] = now  # when the next attempt goes out (None: no more)
        self._timeout_at = float("inf")  # when the current attempt counts as unanswered
        self._final = False  # no retry left: the next timeout gives up
        self._reassembly = Reassembly()
        self._result: Optional[Reply] = None
        self._error: Optional[AxonClientError] = None

    # --- driving -------------------------------------------------------------------------

    def tick(self, now: float) -> Tuple[List[bytes], float]:
        """Datagrams to send now, and how long to wait for replies before calling tick() again.
        Raises AxonTimeout or AxonBusy when the budget or the deadline is spent."""
        if self._deadline_at is not None and now >= self._deadline_at:
            self._give_up("the deadline passed")
        out: List[bytes] = []
        if self._send_at is not None and now >= self._send_at:
            out = self._attempt(now)
        elif now >= self._timeout_at:
            if self._final:
                self._give_up("no reply")
            self._emit("timeout", now)
            self._timeouts += 1
            if self._idempotent and self.attempts < self._policy.max_attempts:
                self._send_at = self._timeout_at + self._policy.backoff(self._timeouts)
                self._timeout_at = float("inf")
            else:
                # No retry (budget spent, or not idempotent): a late reply is still taken until
                # the deadline; without one, give up now.
                self._final = True
                self._timeout_at = self._deadline_at if self._deadline_at is not None else now
                if self._timeout_at <= now:
                    self._give_up("no reply")
        wake = min(self._timeout_at, self._send_at if self._send_at is not None else float("inf"))
        if self._deadline_at is not None:
            wake = min(wake, self._deadline_at)
        return out, max(0.0, wake - now)

    def feed(self, datagram: bytes, now: float) -> bool:
        """Offers a received datagram. True once the exchange is over: result() then returns the
        reply or raises the typed error. Datagrams of other requests or invalid ones are ignored."""
        reason, header, payload = parse(datagram)
        if reason is not Reason.OK or header is None or header.request_id != self.request_id:
            return False
        if header.type == MessageType.REQUEST:
            return False  # never a reply (§10 step 5)
        message = self._reassembly.add(header, payload)
        if message is None:
            return False
        if header.type == MessageType.RESPONSE:
            self._result = Reply(message, self.request_id, self.attempts, self._busy, header.trace_id, header.span_id)
            return True
        if header.type == MessageType.BUSY:
            self._busy += 1
            self._last_busy_us = header.retry_after_us
            self._emit("busy", now, retry_after_us=header.retry_after_us)
            return not self._retry_after(now, header.retry_after_us, busy=True)
        # ERROR
        detail = message.decode("utf-8", errors="replace")
        if header.error_code in _RETRYABLE_ERRORS and self._idempotent and self._policy.retry_errors:
            self._emit("retry_error", now, retry_after_us=header.retry_after_us, code=header.error_code)
            if self._retry_after(now, header.retry_after_us, busy=False):
                return False
        self._error = error_for(header.error_code, detail, header.retry_after_us, self.request_id, self.attempts)
        return True

    def result(self) -> Reply:
        if self._error is not None:
            raise self._error
        assert self._result is not None, "result() before feed() returned True"
        return self._result

    # --- internals -----------------------------------------------------------------------

    def _attempt(self, now: float) -> List[bytes]:
        self.attempts += 1
        deadline_us = 0
        if self._deadline_at is not None:
            # The budget still left, as the header's deadline (§5: counted from receipt).
            deadline_us = max(1, min(0xFFFFFFFF, int((self._deadline_at - now) * 1e6)))
            if self._segmented:
                # Every attempt of a segmented message carries the first attempt's deadline:
                # segments whose deadline_us differs from a partial message the appliance still
                # holds (an earlier attempt missing a segment) would be dropped with it as
                # segment_mismatch (§6), and the retry could never complete. The client's own
                # deadline still bounds the call.
                if self._first_deadline_us is None:
                    self._first_deadline_us = deadline_us
                deadline_us = self._first_deadline_us
        header = replace(self._header, deadline_us=deadline_us)
        datagrams = encode_message(header, self._payload, self._max_segment)
        self._send_at = None
        self._timeout_at = now + self._policy.attempt_timeout
        self._emit("send", now)
        return datagrams

    def _retry_after(self, now: float, retry_after_us: int, busy: bool) -> bool:
        """Schedules the next attempt no sooner than retry_after_us; False when the budget or
        the deadline does not allow one (for BUSY, the AxonBusy to raise is then set)."""
        at = now + retry_after_us / 1e6
        if self.attempts >= self._policy.max_attempts or (self._deadline_at is not None and at >= self._deadline_at):
            if busy:
                self._error = AxonBusy(
                    f"request {self.request_id:#x}: still BUSY after {self.attempts} attempt(s) "
                    f"(retry_after_us {retry_after_us}); raise RetryPolicy.max_attempts or the deadline",
                    retry_after_us,
                    self.request_id,
                    self.attempts,
                )
            return False
        self._send_at = at
        self._timeout_at = float("inf")
        self._final = False
        self._reassembly = Reassembly()
        return True

    def _give_up(self, why: str) -> None:
        if self._busy and self._last_busy_us and self._timeouts == 0:
            raise AxonBusy(
                f"request {self.request_id:#x}: {why}, still BUSY after {self.attempts} attempt(s)",
                self._last_busy_us,
                self.request_id,
                self.attempts,
            )
        raise AxonTimeout(
            f"request {self.request_id:#x} to agent {self._header.agent_id}: {why} after {self.attempts} "
            f"attempt(s); check the address, port, tenant and that the agent has workers "
            f"(a request dropped by the front door gets no reply)",
            self.request_id,
            self.attempts,
        )

    def _emit(self, kind: str, now: float, retry_after_us: int = 0, code: int = 0) -> None:
        if self._on_event is not None:
            self._on_event(Event(kind, self.request_id, self.attempts, now, retry_after_us, code))
