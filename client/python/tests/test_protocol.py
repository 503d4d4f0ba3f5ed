"""Unit tests of axon_client's wire format and segmentation, from docs/protocol.md alone: the
§9 example bytes are read out of the document itself."""

from __future__ import annotations

import re
import sys
import unittest
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from axon_client.protocol import (  # noqa: E402
    DEFAULT_SEGMENT_PAYLOAD_IPV4,
    DEFAULT_SEGMENT_PAYLOAD_IPV6,
    Header,
    MessageType,
    Reason,
    Reassembly,
    encode_message,
    error_code_name,
    parse,
    segment_bounds,
    segment_plan,
    validate,
)


def doc_example(marker: str = "example-request-hex") -> bytes:
    """The hex bytes under <!-- marker --> in docs/protocol.md §9."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    block = text.split(f"<!-- {marker} -->", 1)[1].split("```", 2)[1]
    out = bytearray()
    for line in block.strip().splitlines():
        hexpart = line.split("|", 1)[0]
        words = hexpart.split()[1:]  # drop the offset column
        out += bytes(int(w, 16) for w in words if re.fullmatch(r"[0-9a-f]{2}", w))
    return bytes(out)


EXAMPLE = Header(
    type=MessageType.REQUEST,
    priority=0,
    trace_flags=1,
    tenant_id=1,
    agent_id=42,
    session_key=0x1122334455667788,
    request_id=0x0102030405060708,
    trace_id=bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736"),
    span_id=bytes.fromhex("00f067aa0ba902b7"),
    deadline_us=50000,
)


class HeaderTest(unittest.TestCase):
    def test_encodes_the_protocol_md_example(self) -> None:
        expected = doc_example()
        self.assertEqual(len(expected), 85)
        datagrams = encode_message(EXAMPLE, b"hello", DEFAULT_SEGMENT_PAYLOAD_IPV4)
        self.assertEqual(datagrams, [expected])

    def test_encodes_the_protocol_md_segmented_example(self) -> None:
        # §9 "A segmented REQUEST": `hello world` from a sender whose M is below 11 bytes.
        expected = [doc_example("example-segment0-hex"), doc_example("example-segment1-hex")]
        self.assertEqual([len(e) for e in expected], [86, 85])
        self.assertEqual(encode_message(EXAMPLE, b"hello world", 10), expected)
        r = Reassembly()
        self.assertIsNone(r.add(*parse(expected[1])[1:]))  # type: ignore[arg-type]
        self.assertEqual(r.add(*parse(expected[0])[1:]), b"hello world")  # type: ignore[arg-type]

    def test_decodes_the_protocol_md_example(self) -> None:
        reason, header, payload = parse(doc_example())
        self.assertIs(reason, Reason.OK)
        assert header is not None
        self.assertEqual(payload, b"hello")
        self.assertEqual(replace(header, payload_len=0, message_len=0), EXAMPLE)
        self.assertEqual((header.payload_len, header.message_len, header.header_len), (5, 5, 80))

    def test_skips_header_extensions(self) -> None:
        # §7: a longer header_len (a later minor version's fields) moves the payload start.
        base = bytearray(doc_example())
        base[8:10] = (88).to_bytes(2, "big")
        datagram = bytes(base[:80]) + bytes(8) + b"hello"
        reason, header, payload = parse(datagram)
        self.assertIs(reason, Reason.OK)
        self.assertEqual(payload, b"hello")

    def test_validation_reasons(self) -> None:
        good = doc_example()

        def patched(offset: int, value: bytes) -> bytes:
            b = bytearray(good)
            b[offset : offset + len(value)] = value
            return bytes(b)

        self.assertIs(validate(good), Reason.OK)
        self.assertIs(validate(good[:7]), Reason.AXP_TRUNCATED)
        self.assertIs(validate(patched(0, b"AXQ!")), Reason.BAD_MAGIC)
        self.assertIs(validate(patched(4, b"\x02")), Reason.BAD_VERSION)
        self.assertIs(validate(good[:79]), Reason.AXP_TRUNCATED)
        self.assertIs(validate(patched(8, (84).to_bytes(2, "big"))), Reason.BAD_HEADER_LEN)
        self.assertIs(validate(good + b"x"), Reason.BAD_LENGTH)
        self.assertIs(validate(patched(5, b"\x05")), Reason.BAD_TYPE)
        self.assertIs(validate(patched(6, b"\x02")), Reason.BAD_PRIORITY)
        self.assertIs(validate(patched(12, (1).to_bytes(2, "big"))), Reason.BAD_SEGMENT)
        self.assertIs(validate(patched(68, (65537).to_bytes(4, "big"))), Reason.TOO_LARGE)
        self.assertIs(validate(patched(68, (6).to_bytes(4, "big"))), Reason.BAD_LENGTH)

    def test_error_code_names(self) -> None:
        self.assertEqual(error_code_name(9), "handler_error")
        self.assertEqual(error_code_name(10), "unknown_tenant")
        self.assertEqual(error_code_name(200), "internal")  # §4: unknown codes read internal


class SegmentationTest(unittest.TestCase):
    def test_plan_follows_section_6(self) -> None:
        # count = ceil(len / M), S = ceil(len / count); last segment 1..S bytes.
        for length in (1, 5, 1392, 1393, 2784, 2785, 4000, 65535, 65536):
            for m in (1, 7, 1000, 1372, 1392, 65536):
                count, size = segment_plan(length, m)
                self.assertEqual(count, -(-length // m))
                self.assertLessEqual(size, m)
                last = length - (count - 1) * size
                self.assertTrue(1 <= last <= size, (length, m, count, size))

    def test_segments_cover_the_message(self) -> None:
        payload = bytes(i % 251 for i in range(4000))
        datagrams = encode_message(EXAMPLE, payload, 1392)
        self.assertEqual(len(datagrams), 3)
        pieces = []
        for i, d in enumerate(datagrams):
            reason, h, p = parse(d)
            self.assertIs(reason, Reason.OK)
            assert h is not None
            self.assertEqual((h.segment_index, h.segment_count, h.message_len), (i, 3, 4000))
            self.assertLessEqual(len(d), 1472)  # within a 1500 MTU over IPv4 (§1)
            offset, length = segment_bounds(4000, 3, i)
            self.assertEqual((offset, length), (i * 1334, len(p)))
            pieces.append(p)
        self.assertEqual([len(p) for p in pieces], [1334, 1334, 1332])
        self.assertEqual(b"".join(pieces), payload)

    def test_defaults_fit_a_1500_mtu(self) -> None:
        self.assertEqual(DEFAULT_SEGMENT_PAYLOAD_IPV4 + 80 + 8 + 20, 1500)
        self.assertEqual(DEFAULT_SEGMENT_PAYLOAD_IPV6 + 80 + 8 + 40, 1500)

    def test_a_message_of_64_kib_at_most(self) -> None:
        self.assertEqual(len(encode_message(EXAMPLE, bytes(65536), 1392)), 48)
        with self.assertRaises(ValueError):
            encode_message(EXAMPLE, bytes(65537), 1392)

    def test_reassembly_any_order_duplicates_and_mismatch(self) -> None:
        payload = bytes(range(256)) * 20
        reply = replace(EXAMPLE, type=MessageType.RESPONSE)
        parsed = [parse(d)[1:] for d in encode_message(reply, payload, 700)]
        r = Reassembly()
        order = [5, 2, 2, 0, 7, 1, 3, 6, 4]  # 8 segments, one duplicate
        results = [r.add(*parsed[i]) for i in order]
        self.assertEqual(results[:-1], [None] * (len(order) - 1))
        self.assertEqual(results[-1], payload)
        # A segment of a different message (another length) restarts the collection.
        other = [parse(d)[1:] for d in encode_message(reply, payload[:3000], 700)]
        r = Reassembly()
        self.assertIsNone(r.add(*parsed[0]))
        for h, p in other[:-1]:
            self.assertIsNone(r.add(h, p))
        self.assertIsNone(r.add(*parsed[1]))  # restarts with the first message again
        r = Reassembly()
        for h, p in other[:-1]:
            r.add(h, p)
        self.assertEqual(r.add(*other[-1]), payload[:3000])
        # Segments of another execution's reply (same lengths, another responder span) are not
        # mixed in: the collection restarts with them.
        spanned = [(replace(h, span_id=b"\x01" * 8), p) for h, p in parsed]
        other_run = [(replace(h, span_id=b"\x02" * 8), p[::-1]) for h, p in parsed]
        r = Reassembly()
        for h, p in spanned[:-1]:
            self.assertIsNone(r.add(h, p))
        self.assertIsNone(r.add(*other_run[-1]))
        for h, p in spanned[:-1]:
            self.assertIsNone(r.add(h, p))  # restarted: the first run's segments again
        self.assertEqual(r.add(*spanned[-1]), payload)
        # A payload_len that does not fit the index is ignored.
        h, p = parsed[0]
        self.assertIsNone(Reassembly().add(replace(h, payload_len=len(p) - 1), p[:-1]))


if __name__ == "__main__":
    unittest.main()
