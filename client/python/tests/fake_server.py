"""A small fake AXP server on loopback for the client tests: it reassembles segmented requests
(§6, any order), and answers each complete request as its script says (echo, BUSY, ERROR or
silence), segmenting replies larger than its own segment size and sending their segments
shuffled and some twice. It records every datagram it received, with the time."""

from __future__ import annotations

import random
import socket
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from axon_client.protocol import (  # noqa: E402
    Header,
    MessageType,
    Reason,
    encode_message,
    parse,
    segment_bounds,
)


@dataclass
class Received:
    header: Header
    payload: bytes
    at: float


# A script decides the answer to each complete request: ("echo",), ("silent",),
# ("busy", retry_after_us), ("error", code, text) or ("reply", payload_bytes).
Script = Callable[[Header, bytes, int], Tuple]


class FakeServer:
    def __init__(self, script: Optional[Script] = None, reply_segment: int = 1000, family: int = socket.AF_INET):
        self.script: Script = script or (lambda h, p, n: ("echo",))
        self.reply_segment = reply_segment
        host = "127.0.0.1" if family == socket.AF_INET else "::1"
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.05)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.datagrams: List[Received] = []
        self.messages: List[Received] = []  # complete requests, in order of completion
        self._partial: Dict[Tuple, Dict[int, bytes]] = {}
        self._seen: Dict[int, int] = {}  # request id -> complete requests seen
        self._stop = threading.Event()
        self._rng = random.Random(7)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "FakeServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(70000)
            except socket.timeout:
                continue
            reason, h, payload = parse(data)
            if reason is not Reason.OK or h is None or h.type != MessageType.REQUEST:
                continue
            now = time.monotonic()
            self.datagrams.append(Received(h, payload, now))
            message = self._reassemble(h, payload)
            if message is None:
                continue
            self.messages.append(Received(h, message, now))
            n = self._seen.get(h.request_id, 0)
            self._seen[h.request_id] = n + 1
            self._answer(h, message, n, addr)

    def _reassemble(self, h: Header, payload: bytes) -> Optional[bytes]:
        if h.segment_count == 1:
            return payload
        key = (h.request_id, h.message_len, h.segment_count, h.deadline_us)
        parts = self._partial.setdefault(key, {})
        offset, length = segment_bounds(h.message_len, h.segment_count, h.segment_index)
        assert length == len(payload), "the client put a wrong payload_len at this index"
        parts[h.segment_index] = payload
        if len(parts) < h.segment_count:
            return None
        del self._partial[key]
        return b"".join(parts[i] for i in range(h.segment_count))

    def _answer(self, h: Header, message: bytes, n: int, addr: tuple) -> None:
        action = self.script(h, message, n)
        base = replace(h, deadline_us=0, span_id=bytes(8))
        if action[0] == "silent":
            return
        if action[0] == "busy":
            out = encode_message(replace(base, type=MessageType.BUSY, retry_after_us=action[1]), b"", 1)
        elif action[0] == "error":
            out = encode_message(replace(base, type=MessageType.ERROR, error_code=action[1]), action[2].encode(), 1400)
        else:
            body = message if action[0] == "echo" else action[1]
            out = encode_message(replace(base, type=MessageType.RESPONSE), body, self.reply_segment)
            if len(out) > 1:
                out = out + [out[0], out[-1]]  # duplicates
                self._rng.shuffle(out)
        for d in out:
            self.sock.sendto(d, addr)
