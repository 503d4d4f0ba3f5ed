"""The etcd member source of the fleet clients (docs/fleet.md, "Members").

A thread lists <prefix>members/ through etcd's v3 JSON gateway (POST /v3/kv/range), then
watches the prefix from the listed revision + 1 (POST /v3/watch: a streaming response, one JSON
message per line, read with http.client) and hands each change on as it arrives, so a member
that joins, changes or whose lease expires (etcd deletes its key) is seen at once. After a
failed read or a broken watch it waits `poll_interval` and lists again (the resync), trying the
endpoints in turn, the one that answered first. stdlib only; plain http:// endpoints (the
clients poll with urllib when an endpoint is something else).
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import urllib.parse
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .fleet import FleetMember, _b64, _member_of, _range_end

_WatchErrors = (OSError, ValueError, KeyError, TypeError, AttributeError, http.client.HTTPException)


def watchable(endpoints: Sequence[str]) -> bool:
    """Whether every endpoint is one this module speaks to (http://host[:port])."""
    return all(urllib.parse.urlsplit(e).scheme == "http" and urllib.parse.urlsplit(e).hostname for e in endpoints)


def _members_from(values: Dict[str, Any]) -> List[FleetMember]:
    """The serving members among the member keys' values (key -> parsed JSON), by key."""
    out = []
    for key in sorted(values):
        member = _member_of(key, values[key])
        if member is not None:
            out.append(member)
    return out


def _decode(kv: Dict[str, Any]) -> Optional[Tuple[str, Any]]:
    """(key, parsed value) of one kv of the gateway; the value is None when it is not JSON
    (such a member is skipped); None when the key itself cannot be read."""
    try:
        key = base64.b64decode(kv["key"]).decode()
    except (KeyError, ValueError, TypeError):
        return None
    try:
        return key, json.loads(base64.b64decode(kv.get("value", "")))
    except (ValueError, TypeError):
        return key, None


def _connect(endpoint: str, timeout: float) -> http.client.HTTPConnection:
    u = urllib.parse.urlsplit(endpoint)
    conn = http.client.HTTPConnection(u.hostname or "", u.port or 2379, timeout=timeout)
    conn.connect()
    return conn


class EtcdMemberWatch:
    """Keeps a member list current from etcd: on_members(list) on every change, on_error() for
    each failed read or broken watch (the last list stays in use). start(), then stop()."""

    def __init__(
        self,
        endpoints: Sequence[str],
        prefix: str,
        poll_interval: float,
        on_members: Callable[[List[FleetMember]], None],
        on_error: Callable[[], None],
        timeout: float = 2.0,
    ) -> None:
        self._endpoints = list(endpoints)
        self._key = (prefix + "members/").encode()
        self._interval = poll_interval
        self._timeout = timeout
        self._on_members = on_members
        self._on_error = on_error
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sock: Optional[socket.socket] = None  # the watch's, shut down by stop()
        self._thread = threading.Thread(target=self._run, name="axon-fleet-etcd", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked read of a quiet watch
            except OSError:
                pass
        self._thread.join()

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            if not first and self._stop.wait(self._interval):
                return
            first = False
            try:
                endpoint, values, revision = self._list()
            except ConnectionError:
                self._on_error()
                continue
            self._on_members(_members_from(values))
            try:
                self._watch(endpoint, values, revision + 1)
            except _WatchErrors:
                pass
            if not self._stop.is_set():
                self._on_error()  # the watch broke or ended: list again after the interval

    def _list(self) -> Tuple[str, Dict[str, Any], int]:
        body = json.dumps({"key": _b64(self._key), "range_end": _b64(_range_end(self._key))})
        errors = []
        for i, endpoint in enumerate(self._endpoints):
            try:
                conn = _connect(endpoint, self._timeout)
                try:
                    conn.request("POST", "/v3/kv/range", body, {"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                if resp.status != 200:
                    raise ValueError(f"HTTP {resp.status}")
                doc = json.loads(data)
                if not isinstance(doc, dict) or "error" in doc:
                    raise ValueError(f"etcd answered an error: {doc}")
                values = dict(d for d in (_decode(kv) for kv in doc.get("kvs", [])) if d is not None)
                revision = int(doc["header"]["revision"])
            except _WatchErrors as e:
                errors.append(f"{endpoint}: {e}")
                continue
            self._endpoints.insert(0, self._endpoints.pop(i))  # first next time
            return endpoint, values, revision
        raise ConnectionError(f"no etcd endpoint answered for {self._key.decode()}: {'; '.join(errors)}")

    def _watch(self, endpoint: str, values: Dict[str, Any], start_revision: int) -> None:
        conn = _connect(endpoint, self._timeout)
        with self._lock:
            if self._stop.is_set():
                conn.close()
                return
            self._sock = conn.sock
        try:
            create = {"key": _b64(self._key), "range_end": _b64(_range_end(self._key)),
                      "start_revision": str(start_revision)}  # fmt: skip
            conn.request("POST", "/v3/watch", json.dumps({"create_request": create}),
                         {"Content-Type": "application/json"})  # fmt: skip
            resp = conn.getresponse()
            if resp.status != 200:
                raise ValueError(f"HTTP {resp.status} on /v3/watch")
            conn.sock.settimeout(None)  # a quiet prefix sends nothing for as long as it stays quiet
            while not self._stop.is_set():
                line = resp.readline()
                if not line:
                    return  # the stream ended
                if line.strip() and not self._apply(json.loads(line), values):
                    return
        finally:
            with self._lock:
                self._sock = None
            conn.close()

    def _apply(self, message: Dict[str, Any], values: Dict[str, Any]) -> bool:
        """One message of the stream; False when the watch ended (error, canceled, compacted)."""
        result = message.get("result")
        if "error" in message or not isinstance(result, dict) or result.get("canceled"):
            return False
        events = result.get("events") or []
        for event in events:
            decoded = _decode(event.get("kv", {}))
            if decoded is None:
                continue
            if event.get("type") == "DELETE":
                values.pop(decoded[0], None)
            else:
                values[decoded[0]] = decoded[1]
        if events:
            self._on_members(_members_from(values))
        return True
