"""axon_client: a plain-Python client for axon's AXP protocol (docs/protocol.md).

Synchronous (Client) and asyncio (AsyncClient) clients with the same features: requests up to
64 KiB (segmented per §6, replies reassembled), retries with the same request id on timeout
with exponential backoff and a retry budget, BUSY honoured (retry no sooner than
retry_after_us), a client-side deadline also sent as the header's deadline_us, W3C trace
context, and ERROR replies raised as typed exceptions named after their AXP error code.
FleetClient and AsyncFleetClient spread sessions over several appliances (axon_client.fleet).
"""

from .aio import AsyncClient
from .client import Client
from .errors import (
    AxonBusy,
    AxonClientError,
    AxonErrorReply,
    AxonTimeout,
    DeadlineExceeded,
    HandlerError,
    DuplicateReplyEvicted,
    InternalError,
    Malformed,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    UnknownAgent,
    UnknownTenant,
    UnsupportedVersion,
    WorkerFailed,
)
from .exchange import Event, Reply, RetryPolicy, TraceContext
from .fleet import AsyncFleetClient, FleetClient, FleetMember, FleetReply
from .protocol import ErrorCode, Header, MessageType, Priority

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "AsyncFleetClient",
    "AxonBusy",
    "AxonClientError",
    "AxonErrorReply",
    "AxonTimeout",
    "Client",
    "DeadlineExceeded",
    "ErrorCode",
    "Event",
    "FleetClient",
    "FleetMember",
    "FleetReply",
    "HandlerError",
    "Header",
    "DuplicateReplyEvicted",
    "InternalError",
    "Malformed",
    "MessageType",
    "Overloaded",
    "PayloadTooLarge",
    "Priority",
    "RateLimited",
    "Reply",
    "RetryPolicy",
    "TraceContext",
    "UnknownAgent",
    "UnknownTenant",
    "UnsupportedVersion",
    "WorkerFailed",
]
