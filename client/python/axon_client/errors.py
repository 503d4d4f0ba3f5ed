"""Exceptions of the AXP client: one class per §4 error code, and the client's own failures
(no reply in time, still BUSY when the retry budget ran out)."""

from __future__ import annotations

from typing import Dict, Optional, Type

from .protocol import ErrorCode, error_code_name


class AxonClientError(Exception):
    """Base of every exception this package raises for a request that was not served."""

    def __init__(self, message: str, request_id: int = 0, attempts: int = 0):
        super().__init__(message)
        self.request_id = request_id
        self.attempts = attempts


class AxonTimeout(AxonClientError, TimeoutError):
    """No reply came within the retry budget or the deadline. The request may still have run."""


class AxonBusy(AxonClientError):
    """The appliance answered BUSY and the retry budget or the deadline ran out before a retry
    was accepted. `retry_after_us` is what the last BUSY asked for. The request never ran."""

    def __init__(self, message: str, retry_after_us: int, request_id: int = 0, attempts: int = 0):
        super().__init__(message, request_id, attempts)
        self.retry_after_us = retry_after_us


class AxonErrorReply(AxonClientError):
    """The appliance answered ERROR. `code` is the §4 number, `code_name` its name
    (`handler_error`, ...), `detail` the reply's UTF-8 explanation, if it had one."""

    code: int = ErrorCode.INTERNAL

    def __init__(
        self,
        code: int,
        detail: str = "",
        retry_after_us: int = 0,
        request_id: int = 0,
        attempts: int = 0,
    ):
        self.code = code
        self.code_name = error_code_name(code)
        self.detail = detail
        self.retry_after_us = retry_after_us
        text = f"AXP ERROR {self.code_name} ({code})"
        if detail:
            text += f": {detail}"
        super().__init__(text, request_id, attempts)


class Malformed(AxonErrorReply):
    """1 malformed: the request broke a protocol rule. Fix the client; do not retry."""


class UnsupportedVersion(AxonErrorReply):
    """2 unsupported_version."""


class PayloadTooLarge(AxonErrorReply):
    """3 payload_too_large: the receiver cannot take (or the handler's reply cannot fit) this size."""


class UnknownAgent(AxonErrorReply):
    """4 unknown_agent: no worker serves this (tenant, agent)."""


class Overloaded(AxonErrorReply):
    """5 overloaded: shedding load; retry after `retry_after_us` at the earliest."""


class WorkerFailed(AxonErrorReply):
    """6 worker_failed: the worker died or stalled, or the agent has no live worker now."""


class DeadlineExceeded(AxonErrorReply):
    """7 deadline_exceeded: the request's deadline_us ran out (or could not be met) in the appliance."""


class RateLimited(AxonErrorReply):
    """8 rate_limited (reserved; the v1 appliance never sends it)."""


class HandlerError(AxonErrorReply):
    """9 handler_error: the handler ran and reported failure; `detail` may explain."""


class UnknownTenant(AxonErrorReply):
    """10 unknown_tenant: the tenant id is not configured."""


class InternalError(AxonErrorReply):
    """11 internal, and every code this client does not know (§4)."""


class DuplicateReplyEvicted(AxonErrorReply):
    """12 duplicate_reply_evicted: this request_id was answered within the agent's dedup window,
    but the reply is no longer cached; the request was not run again (docs/protocol.md §1)."""


_BY_CODE: Dict[int, Type[AxonErrorReply]] = {
    ErrorCode.MALFORMED: Malformed,
    ErrorCode.UNSUPPORTED_VERSION: UnsupportedVersion,
    ErrorCode.PAYLOAD_TOO_LARGE: PayloadTooLarge,
    ErrorCode.UNKNOWN_AGENT: UnknownAgent,
    ErrorCode.OVERLOADED: Overloaded,
    ErrorCode.WORKER_FAILED: WorkerFailed,
    ErrorCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    ErrorCode.RATE_LIMITED: RateLimited,
    ErrorCode.HANDLER_ERROR: HandlerError,
    ErrorCode.UNKNOWN_TENANT: UnknownTenant,
    ErrorCode.INTERNAL: InternalError,
    ErrorCode.DUPLICATE_REPLY_EVICTED: DuplicateReplyEvicted,
}


def error_for(
    code: int, detail: str = "", retry_after_us: int = 0, request_id: int = 0, attempts: int = 0
) -> AxonErrorReply:
    """The typed exception for an ERROR reply's code."""
    cls: Optional[Type[AxonErrorReply]] = _BY_CODE.get(code)
    return (cls or InternalError)(code, detail, retry_after_us, request_id, attempts)
