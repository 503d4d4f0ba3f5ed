"""AXP v1 wire format (docs/protocol.md): the 80-byte header, validation of received
datagrams (§8 steps 10-21), segmentation (§6) and reassembly of segmented messages.

Pure functions and one small reassembly buffer; no I/O. Both clients build on this module.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Tuple

MAGIC = b"AXP!"
VERSION = 1
HEADER_LEN = 80
MAX_HEADER_LEN = 512
MAX_MESSAGE_LEN = 65536
DEFAULT_PORT = 7400

# Largest UDP payload on a 1500-byte Ethernet path (§1), and the segment payload that leaves.
UDP_PAYLOAD_1500_IPV4 = 1472
UDP_PAYLOAD_1500_IPV6 = 1452
DEFAULT_SEGMENT_PAYLOAD_IPV4 = UDP_PAYLOAD_1500_IPV4 - HEADER_LEN  # 1392
DEFAULT_SEGMENT_PAYLOAD_IPV6 = UDP_PAYLOAD_1500_IPV6 - HEADER_LEN  # 1372

# magic, version, type, priority, trace_flags, header_len, payload_len, segment_index,
# segment_count, tenant_id, agent_id, session_key, request_id, trace_id, span_id,
# deadline_us, message_len, error_code, reserved, retry_after_us
_HEADER = struct.Struct(">4sBBBBHHHHIIQQ16s8sIIHHI")
assert _HEADER.size == HEADER_LEN


class MessageType(enum.IntEnum):
    """§3 message types."""

    REQUEST = 1
    RESPONSE = 2
    BUSY = 3
    ERROR = 4


class Priority(enum.IntEnum):
    """§2 `priority`: interactive requests are served ahead of background ones."""

    INTERACTIVE = 0
    BACKGROUND = 1


class ErrorCode(enum.IntEnum):
    """§4 error codes. A code this client does not know is treated like INTERNAL."""

    NONE = 0
    MALFORMED = 1
    UNSUPPORTED_VERSION = 2
    PAYLOAD_TOO_LARGE = 3
    UNKNOWN_AGENT = 4
    OVERLOADED = 5
    WORKER_FAILED = 6
    DEADLINE_EXCEEDED = 7
    RATE_LIMITED = 8
    HANDLER_ERROR = 9
    UNKNOWN_TENANT = 10
    INTERNAL = 11
    DUPLICATE_REPLY_EVICTED = 12


def error_code_name(code: int) -> str:
    """The §4 name of `code` (`handler_error`, ...); unknown codes read `internal`, as §4 asks."""
    try:
        return ErrorCode(code).name.lower()
    except ValueError:
        return "internal"


class Reason(enum.Enum):
    """Why a received datagram is not valid AXP (§8 names), or OK."""

    OK = "ok"
    AXP_TRUNCATED = "axp_truncated"
    BAD_MAGIC = "bad_magic"
    BAD_VERSION = "bad_version"
    BAD_HEADER_LEN = "bad_header_len"
    BAD_LENGTH = "bad_length"
    BAD_TYPE = "bad_type"
    BAD_PRIORITY = "bad_priority"
    BAD_SEGMENT = "bad_segment"
    TOO_LARGE = "too_large"


@dataclass(frozen=True)
class Header:
    """One AXP header. Defaults make a single-segment interactive REQUEST without trace context."""

    type: int = MessageType.REQUEST
    priority: int = Priority.INTERACTIVE
    trace_flags: int = 0
    header_len: int = HEADER_LEN
    payload_len: int = 0
    segment_index: int = 0
    segment_count: int = 1
    tenant_id: int = 0
    agent_id: int = 0
    session_key: int = 0
    request_id: int = 0
    trace_id: bytes = bytes(16)
    span_id: bytes = bytes(8)
    deadline_us: int = 0
    message_len: int = 0
    error_code: int = 0
    reserved: int = 0
    retry_after_us: int = 0
    version: int = VERSION
    magic: bytes = field(default=MAGIC, repr=False)

    def encode(self) -> bytes:
        """The 80 header bytes (extension fields of later minor versions are never written)."""
        return _HEADER.pack(
            self.magic,
            self.version,
            self.type,
            self.priority,
            self.trace_flags,
            HEADER_LEN,
            self.payload_len,
            self.segment_index,
            self.segment_count,
            self.tenant_id,
            self.agent_id,
            self.session_key,
            self.request_id,
            self.trace_id,
            self.span_id,
            self.deadline_us,
            self.message_len,
            self.error_code,
            self.reserved,
            self.retry_after_us,
        )

    @classmethod
    def decode(cls, data: bytes) -> "Header":
        """Decodes the fixed 80 bytes at the start of `data` (no validation: see validate())."""
        f = _HEADER.unpack_from(data, 0)
        return cls(
            magic=f[0],
            version=f[1],
            type=f[2],
            priority=f[3],
            trace_flags=f[4],
            header_len=f[5],
            payload_len=f[6],
            segment_index=f[7],
            segment_count=f[8],
            tenant_id=f[9],
            agent_id=f[10],
            session_key=f[11],
            request_id=f[12],
            trace_id=f[13],
            span_id=f[14],
            deadline_us=f[15],
            message_len=f[16],
            error_code=f[17],
            reserved=f[18],
            retry_after_us=f[19],
        )


def validate(datagram: bytes) -> Reason:
    """§8 steps 10-21 on one received datagram (the checks every AXP receiver applies)."""
    n = len(datagram)
    if n < 8:
        return Reason.AXP_TRUNCATED
    if datagram[0:4] != MAGIC:
        return Reason.BAD_MAGIC
    if datagram[4] != VERSION:
        return Reason.BAD_VERSION
    if n < HEADER_LEN:
        return Reason.AXP_TRUNCATED
    h = Header.decode(datagram)
    if h.header_len < HEADER_LEN or h.header_len % 8 != 0 or h.header_len > MAX_HEADER_LEN:
        return Reason.BAD_HEADER_LEN
    if h.header_len + h.payload_len != n:
        return Reason.BAD_LENGTH
    if not 1 <= h.type <= 4:
        return Reason.BAD_TYPE
    if h.priority not in (0, 1):
        return Reason.BAD_PRIORITY
    if h.segment_count == 0 or h.segment_index >= h.segment_count:
        return Reason.BAD_SEGMENT
    if h.message_len > MAX_MESSAGE_LEN:
        return Reason.TOO_LARGE
    if h.payload_len > h.message_len or (h.segment_count == 1 and h.payload_len != h.message_len):
        return Reason.BAD_LENGTH
    return Reason.OK


def parse(datagram: bytes) -> Tuple[Reason, Optional[Header], bytes]:
    """Validates and splits a datagram into (reason, header, payload); header None unless OK."""
    reason = validate(datagram)
    if reason is not Reason.OK:
        return reason, None, b""
    h = Header.decode(datagram)
    return reason, h, bytes(datagram[h.header_len :])


# --- segmentation (§6) -------------------------------------------------------------------


def segment_plan(message_len: int, max_segment_payload: int) -> Tuple[int, int]:
    """(segment_count, S) for a message: count = ceil(len / M), S = ceil(len / count).

    Segments 0..count-2 carry S bytes each and the last one the rest (1..S bytes); an empty
    message is one empty segment.
    """
    if max_segment_payload < 1:
        raise ValueError("max_segment_payload must be at least 1 byte")
    if message_len < 0 or message_len > MAX_MESSAGE_LEN:
        raise ValueError(f"a message carries 0..{MAX_MESSAGE_LEN} payload bytes, not {message_len}")
    if message_len == 0:
        return 1, 0
    count = -(-message_len // max_segment_payload)
    size = -(-message_len // count)
    return count, size


def segment_bounds(message_len: int, segment_count: int, index: int) -> Tuple[int, int]:
    """(offset, length) of segment `index` of a message, as any receiver computes it (§6)."""
    if segment_count == 1:
        return 0, message_len
    size = -(-message_len // segment_count)
    offset = index * size
    return offset, max(0, min(size, message_len - offset))


def encode_message(header: Header, payload: bytes, max_segment_payload: int) -> List[bytes]:
    """The datagrams of one message: `header` with its segment and length fields filled in."""
    count, _ = segment_plan(len(payload), max_segment_payload)
    if count > 0xFFFF:
        raise ValueError("too many segments")
    out = []
    for i in range(count):
        offset, length = segment_bounds(len(payload), count, i)
        h = replace(
            header,
            payload_len=length,
            segment_index=i,
            segment_count=count,
            message_len=len(payload),
            header_len=HEADER_LEN,
        )
        out.append(h.encode() + payload[offset : offset + length])
    return out


class Reassembly:
    """Collects the segments of one received message (any order, duplicates ignored).

    add() returns the whole payload once every segment is there. A segment that disagrees with
    the ones already held (another type, message_len, segment_count or span_id: in practice
    the reply to another attempt of the same request, which ran again) restarts the collection
    with the newer one, so one payload is never pieced together from two executions that can
    be told apart; a segment whose payload_len is not what §6 puts at its index is ignored.
    """

    __slots__ = ("header", "_parts", "_have")

    def __init__(self) -> None:
        self.header: Optional[Header] = None
        self._parts: Dict[int, bytes] = {}
        self._have = 0

    def add(self, header: Header, payload: bytes) -> Optional[bytes]:
        if header.segment_count == 1:
            self.header, self._parts, self._have = header, {}, 0
            return payload
        _, expected = segment_bounds(header.message_len, header.segment_count, header.segment_index)
        if header.payload_len != expected or expected == 0:
            return None  # impossible offset or length for this index: not part of any message
        h = self.header
        if h is None or (h.type, h.message_len, h.segment_count, h.error_code, h.span_id) != (
            header.type,
            header.message_len,
            header.segment_count,
            header.error_code,
            header.span_id,
        ):
            self.header, self._parts, self._have = header, {}, 0
        if header.segment_index in self._parts:
            return None  # a duplicate
        self._parts[header.segment_index] = payload
        self._have += len(payload)
        if len(self._parts) < header.segment_count:
            return None
        return b"".join(self._parts[i] for i in range(header.segment_count))
