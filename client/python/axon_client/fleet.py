"""Fleet clients: one AXP client over several appliances (docs/fleet.md, "Clients").

Each (tenant, agent, session_key) is placed on a member by rendezvous hashing (highest random
weight): the member with the highest weight mix64(member_hash(id) ^ key) serves the key, so
adding or losing one of N members moves about 1/N of the keys, and only those. The hash is the
same as the C++ client's (axon/client/fleet.h), byte for byte: both place a key on the same
member. A request without a session key (0) is placed per request, so such requests spread.

A request its member cannot serve (no reply within `member_timeout`, or ERROR worker_failed /
overloaded) fails over to the next member in that key's order, within the call's deadline and
with the same request id. On the same appliance that id is its retry dedup (docs/protocol.md
§1); another appliance is another dedup domain, so a failover after a lost reply may run the
handler twice: use it for idempotent handlers, or pass idempotent=False (no failover).

Members come from a static list ("host:port" strings) or from etcd: the range of
<prefix>members/ read through etcd's v3 JSON gateway, then watched (axon_client.fleet_etcd: a
thread reads the gateway's /v3/watch stream), so a member change is seen as etcd applies it;
after a broken watch the range is read again `poll_interval` seconds later. Endpoints other
than plain http:// are polled every `poll_interval` seconds with urllib instead.

    with FleetClient(["10.0.0.1:7400", "10.0.0.2:7400"], tenant=1) as fleet:
        fleet.request(agent=7, payload=b"hi", session_key=42, deadline=1.0)
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
import socket
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

from .aio import AsyncClient
from .client import Client, resolve
from .errors import AxonClientError, AxonErrorReply, AxonTimeout
from .exchange import Reply, RetryPolicy, TraceContext, new_request_id
from .protocol import DEFAULT_PORT, ErrorCode, Priority

_M64 = (1 << 64) - 1

# ---- placement (the contract shared with the C++ client) -------------------------------------


def mix64(x: int) -> int:
    """SplitMix64's finaliser: every output bit depends on every input bit."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def member_hash(member_id: str) -> int:
    """FNV-1a 64 over the id's UTF-8 bytes, then mix64."""
    h = 0xCBF29CE484222325
    for b in member_id.encode():
        h = ((h ^ b) * 0x100000001B3) & _M64
    return mix64(h)


def fleet_key(tenant: int, agent: int, session_key: int) -> int:
    """The placement key of a request: mix64(mix64(mix64(tenant) ^ agent) ^ session_key)."""
    return mix64(mix64(mix64(tenant & 0xFFFFFFFF) ^ (agent & 0xFFFFFFFF)) ^ (session_key & _M64))


def rendezvous_order(member_ids: Sequence[str], key: int) -> List[int]:
    """Indexes of member_ids, highest weight mix64(member_hash ^ key) first; ties by id."""
    ranked = sorted(
        range(len(member_ids)),
        key=lambda i: (-mix64(member_hash(member_ids[i]) ^ key), member_ids[i]),
    )
    return ranked


# ---- members ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetMember:
    """A member: `id` is what placement hashes (the appliance id from etcd, or the "host:port"
    string of a static list); host and port are its AXP address. `degraded` (etcd health
    "degraded": its data plane is not linked) places it after the healthy members."""

    id: str
    host: str
    port: int = DEFAULT_PORT
    degraded: bool = False


def parse_member(text: str) -> FleetMember:
    """"host", "host:port", "[v6]" or "[v6]:port" (port 7400 by default); the id is `text`."""
    if not text:
        raise ValueError("empty fleet member address")
    host, port = text, DEFAULT_PORT
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"{text!r}: missing ']' after an IPv6 address")
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r}: expected ':PORT' after ']'")
            port = _port(text, rest[1:])
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _port(text, port_text)
    return FleetMember(text, host, port)


def _port(text: str, port_text: str) -> int:
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return int(port_text)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _range_end(prefix: bytes) -> bytes:
    p = bytearray(prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return b"\0"


def parse_etcd_members(range_response: Union[bytes, str]) -> List[FleetMember]:
    """The serving members in a /v3/kv/range answer for the members prefix: those whose value
    parses and has an AXP address, without the "draining" ones (they take no new sessions);
    "degraded" ones are flagged."""
    doc = json.loads(range_response)
    if not isinstance(doc, dict):
        raise ValueError("etcd's range answer is not a JSON object")
    if "error" in doc or "code" in doc:
        raise ValueError(f"etcd answered an error: {doc}")
    out: List[FleetMember] = []
    for kv in doc.get("kvs", []):
        try:
            key = base64.b64decode(kv["key"]).decode()
            value = json.loads(base64.b64decode(kv.get("value", "")))
        except (KeyError, ValueError, TypeError):
            continue  # a member we cannot read: skipped
        member = _member_of(key, value)
        if member is not None:
            out.append(member)
    return out


def _member_of(key: str, v: Any) -> Optional[FleetMember]:
    if not isinstance(v, dict):
        return None
    health = v.get("health", "ok")
    if health == "draining":
        return None
    axp = v.get("axp")
    if not isinstance(axp, list) or not axp or not isinstance(axp[0], dict):
        return None
    host = axp[0].get("address")
    port = axp[0].get("port", DEFAULT_PORT)
    if not isinstance(host, str) or not host or type(port) is not int or not 0 < port < 65536:
        return None
    mid = v.get("id")
    if not isinstance(mid, str) or not mid:
        mid = key.rsplit("/", 1)[-1]
    return FleetMember(mid, host, port, health == "degraded") if mid else None


def read_etcd_members(endpoints: Sequence[str], prefix: str = "/axon/", timeout: float = 2.0) -> List[FleetMember]:
    """One range read of <prefix>members/ from the first endpoint that answers."""
    key = (prefix + "members/").encode()
    body = json.dumps({"key": _b64(key), "range_end": _b64(_range_end(key))}).encode()
    errors = []
    for endpoint in endpoints:
        req = urllib.request.Request(
            endpoint.rstrip("/") + "/v3/kv/range", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return parse_etcd_members(resp.read())
        except (OSError, ValueError, urllib.error.URLError) as e:
            errors.append(f"{endpoint}: {e}")
    raise ConnectionError(f"no etcd endpoint answered for {prefix}members/: {'; '.join(errors)} (is etcd running?)")


# ---- member state shared by the sync and asyncio clients -------------------------------------


@dataclass
class _Member:
    info: FleetMember
    client: Any = None
    down: bool = False
    probe_at: float = 0.0
    probe_wait: float = 0.0


@dataclass
class FleetCounters:
    calls: int = 0
    failovers: int = 0  # attempts moved to the next member
    member_down: int = 0  # members marked down after a failure
    member_up: int = 0  # down members that answered a probe
    failed_calls: int = 0  # calls that raised after every member tried
    member_updates: int = 0  # member lists applied
    etcd_errors: int = 0  # etcd reads and watches that failed (the last list stays in use)


@dataclass(frozen=True)
class FleetReply:
    """A RESPONSE and the member that gave it."""

    reply: Reply
    member: str
    members_tried: int


_FAILOVER_CODES = (ErrorCode.WORKER_FAILED, ErrorCode.OVERLOADED)


@dataclass
class _Fleet:
    member_timeout: float
    probe_after: float
    probe_max: float
    members: List[_Member] = field(default_factory=list)
    counters: FleetCounters = field(default_factory=FleetCounters)
    spread: int = field(default_factory=new_request_id)

    def apply(self, members: Iterable[FleetMember]) -> List[Any]:
        """Replaces the members; returns the clients of members that left (to close)."""
        old = {(m.info.id, m.info.host, m.info.port): m for m in self.members}
        kept = []
        for i in members:
            m = old.pop((i.id, i.host, i.port), None) or _Member(i)
            m.info = i  # its health may have changed
            kept.append(m)
        self.members = kept
        self.counters.member_updates += 1
        return [m.client for m in old.values() if m.client is not None]

    def order(self, key: int, now: float) -> List[_Member]:
        ids = [m.info.id for m in self.members]
        ranked = [self.members[i] for i in rendezvous_order(ids, key)]
        first = [m for m in ranked if (not m.down or m.probe_at <= now) and not m.info.degraded]
        return first + [m for m in ranked if m not in first]

    def key_for(self, tenant: int, agent: int, session_key: int) -> int:
        if session_key == 0:
            self.spread = (self.spread + 1) & _M64
            session_key = mix64(self.spread)
        return fleet_key(tenant, agent, session_key)

    def mark_down(self, m: _Member, now: float) -> Any:
        """Marks m down; returns its client to close (a fresh socket for the probe)."""
        if not m.down:
            m.down = True
            m.probe_wait = self.probe_after
            self.counters.member_down += 1
        m.probe_at = now + m.probe_wait
        m.probe_wait = min(m.probe_wait * 2, max(self.probe_after, self.probe_max))
        client, m.client = m.client, None
        return client

    def mark_up(self, m: _Member) -> None:
        if m.down:
            m.down = False
            self.counters.member_up += 1

    def budget(self, remaining: float, last: bool) -> float:
        return remaining if last else min(remaining, self.member_timeout)


SocketFactory = Callable[[int], socket.socket]


def _socket_for(factory: Optional[SocketFactory], member: FleetMember) -> Optional[socket.socket]:
    """A socket from the caller's factory (given the member's address family), or None."""
    if factory is None:
        return None
    family, _ = resolve(member.host, member.port)
    return factory(family)


def _members_of(members: Optional[Sequence[Union[str, FleetMember]]]) -> List[FleetMember]:
    return [m if isinstance(m, FleetMember) else parse_member(m) for m in (members or [])]


# ---- the synchronous fleet client ------------------------------------------------------------


class FleetClient:
    """A synchronous AXP client over a fleet (see the module docstring).

    members: "host:port" strings or FleetMember; or etcd_endpoints (["http://127.0.0.1:2379"])
      and etcd_prefix ("/axon/") to read them from etcd and watch them there (poll_interval:
      the wait before reading them again after a broken watch or a failed read).
    tenant, retry: as for Client (each member has one Client).
    member_timeout: the most one member gets of a call's deadline before the call fails over;
      the last member tried gets all that is left. It is also the deadline_us that member sees.
    probe_after, probe_max: a member that timed out is left out of placement and tried again
      (one request) after probe_after seconds, doubled after each failed probe up to probe_max.
    sock_factory: makes each member's UDP socket, given its address family (e.g. one made in
      another network namespace, or bound to a source address); None: the client makes them.
    Calls from several threads are serialised.
    """

    def __init__(
        self,
        members: Optional[Sequence[Union[str, FleetMember]]] = None,
        *,
        tenant: int,
        etcd_endpoints: Optional[Sequence[str]] = None,
        etcd_prefix: str = "/axon/",
        poll_interval: float = 1.0,
        retry: RetryPolicy = RetryPolicy(),
        member_timeout: float = 0.3,
        probe_after: float = 1.0,
        probe_max: float = 10.0,
        sock_factory: Optional[SocketFactory] = None,
    ) -> None:
        if member_timeout <= 0:
            raise ValueError("member_timeout must be positive")
        self.tenant = tenant
        self.retry = retry
        self.sock_factory = sock_factory
        self._fleet = _Fleet(member_timeout, probe_after, probe_max)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: Optional[threading.Thread] = None
        self._watch: Any = None
        if etcd_endpoints:
            endpoints, prefix = list(etcd_endpoints), etcd_prefix
            self._fleet.apply(read_etcd_members(endpoints, prefix))
            from .fleet_etcd import EtcdMemberWatch, watchable

            if watchable(endpoints):
                self._watch = EtcdMemberWatch(endpoints, prefix, poll_interval, self.set_members, self._etcd_error)
                self._watch.start()
            else:
                self._poller = threading.Thread(
                    target=self._poll, args=(endpoints, prefix, poll_interval), name="axon-fleet-etcd", daemon=True
                )
                self._poller.start()
        else:
            self._fleet.apply(_members_of(members))

    def _etcd_error(self) -> None:
        with self._lock:
            self._fleet.counters.etcd_errors += 1

    def _poll(self, endpoints: List[str], prefix: str, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                members = read_etcd_members(endpoints, prefix)
            except (ConnectionError, ValueError):
                self._etcd_error()
                continue
            self.set_members(members)

    def set_members(self, members: Sequence[Union[str, FleetMember]]) -> None:
        """Replaces the member list; a member whose id and address stay keeps its state."""
        with self._lock:
            wanted = _members_of(members)
            if [m.info for m in self._fleet.members] == wanted:
                return
            for c in self._fleet.apply(wanted):
                c.close()

    def placement(self, agent: int, session_key: int) -> List[str]:
        """Member ids in the order a call for (tenant, agent, session_key) would try them now."""
        with self._lock:
            key = fleet_key(self.tenant, agent, session_key)
            return [m.info.id for m in self._fleet.order(key, time.monotonic())]

    @property
    def counters(self) -> FleetCounters:
        return self._fleet.counters

    @property
    def members_down(self) -> int:
        return sum(1 for m in self._fleet.members if m.down)

    def request(self, agent: int, payload: Union[bytes, bytearray, memoryview, str], **kw: Any) -> bytes:
        """Runs `agent`'s handler on `payload` somewhere in the fleet; returns the payload."""
        return self.call(agent, payload, **kw).reply.payload

    def call(
        self,
        agent: int,
        payload: Union[bytes, bytearray, memoryview, str],
        *,
        priority: Union[Priority, int] = Priority.INTERACTIVE,
        deadline: float = 1.0,
        session_key: int = 0,
        trace: Optional[TraceContext] = None,
        idempotent: bool = True,
        retry: Optional[RetryPolicy] = None,
        request_id: Optional[int] = None,
    ) -> FleetReply:
        """Client.call on the key's member with failover. deadline: the whole call's budget in
        seconds. idempotent=False: no failover (and no retry): the key's first live member gets
        the whole deadline, since another member would run the request again. Raises what the
        last member tried raised (AxonTimeout, or the ERROR's typed exception)."""
        with self._lock:
            fleet = self._fleet
            fleet.counters.calls += 1
            end = time.monotonic() + deadline
            order = fleet.order(fleet.key_for(self.tenant, agent, session_key), time.monotonic())
            if not order:
                fleet.counters.failed_calls += 1
                raise AxonClientError("the fleet has no members (check the static list or etcd)")
            if not idempotent:
                order = order[:1]  # no failover: another member would run it again
            rid = request_id if request_id is not None else new_request_id()
            last_error: Optional[Exception] = None
            tried = 0
            for n, m in enumerate(order):
                now = time.monotonic()
                if now >= end:
                    break
                last = n + 1 == len(order)
                if tried:
                    fleet.counters.failovers += 1
                tried += 1
                try:
                    if m.client is None:
                        m.client = Client(
                            m.info.host,
                            m.info.port,
                            tenant=self.tenant,
                            retry=self.retry,
                            sock=_socket_for(self.sock_factory, m.info),
                        )
                    reply = m.client.call(
                        agent,
                        payload,
                        priority=priority,
                        deadline=fleet.budget(end - now, last),
                        session_key=session_key,
                        trace=trace,
                        idempotent=idempotent,
                        retry=retry,
                        request_id=rid,
                    )
                except AxonErrorReply as e:
                    fleet.mark_up(m)
                    last_error = e
                    if e.code in _FAILOVER_CODES:
                        continue
                    raise
                except (AxonTimeout, OSError) as e:
                    last_error = e
                    client = fleet.mark_down(m, time.monotonic())
                    if client is not None:
                        client.close()
                    continue
                fleet.mark_up(m)
                return FleetReply(reply, m.info.id, tried)
            fleet.counters.failed_calls += 1
            if last_error is None:
                raise AxonTimeout("the call's deadline ran out before any member was tried", rid, 0)
            raise last_error

    def close(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        if self._poller is not None:
            self._poller.join()
        with self._lock:
            for m in self._fleet.members:
                if m.client is not None:
                    m.client.close()
                    m.client = None

    def __enter__(self) -> "FleetClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- the asyncio fleet client ----------------------------------------------------------------


class AsyncFleetClient:
    """The asyncio FleetClient: same placement, failover and parameters; many calls in flight.

        fleet = await AsyncFleetClient.connect(["10.0.0.1:7400", "10.0.0.2:7400"], tenant=1)
        replies = await asyncio.gather(*(fleet.request(7, q, session_key=k) for k, q in work))
        await fleet.close()

    With etcd_endpoints, a thread watches the members prefix and hands each change to the event
    loop (endpoints other than http:// are read every poll_interval seconds by a task instead).
    """

    def __init__(self) -> None:
        raise TypeError("use `await AsyncFleetClient.connect(...)`")

    @classmethod
    async def connect(
        cls,
        members: Optional[Sequence[Union[str, FleetMember]]] = None,
        *,
        tenant: int,
        etcd_endpoints: Optional[Sequence[str]] = None,
        etcd_prefix: str = "/axon/",
        poll_interval: float = 1.0,
        retry: RetryPolicy = RetryPolicy(),
        member_timeout: float = 0.3,
        probe_after: float = 1.0,
        probe_max: float = 10.0,
        sock_factory: Optional[SocketFactory] = None,
    ) -> "AsyncFleetClient":
        if member_timeout <= 0:
            raise ValueError("member_timeout must be positive")
        self = cls.__new__(cls)
        self.tenant = tenant
        self.retry = retry
        self.sock_factory = sock_factory
        self._fleet = _Fleet(member_timeout, probe_after, probe_max)
        self._opening: Dict[int, asyncio.Lock] = {}
        self._poller: Optional[asyncio.Task[None]] = None
        self._watch: Any = None
        loop = asyncio.get_running_loop()
        if etcd_endpoints:
            endpoints = list(etcd_endpoints)
            self._fleet.apply(await loop.run_in_executor(None, read_etcd_members, endpoints, etcd_prefix))
            from .fleet_etcd import EtcdMemberWatch, watchable

            if watchable(endpoints):

                def on_members(members: List[FleetMember]) -> None:
                    loop.call_soon_threadsafe(self.set_members, members)

                def on_error() -> None:
                    loop.call_soon_threadsafe(self._etcd_error)

                self._watch = EtcdMemberWatch(endpoints, etcd_prefix, poll_interval, on_members, on_error)
                self._watch.start()
            else:
                self._poller = loop.create_task(self._poll(endpoints, etcd_prefix, poll_interval))
        else:
            self._fleet.apply(_members_of(members))
        return self

    def _etcd_error(self) -> None:
        self._fleet.counters.etcd_errors += 1

    async def _poll(self, endpoints: List[str], prefix: str, interval: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            try:
                members = await loop.run_in_executor(None, read_etcd_members, endpoints, prefix)
            except (ConnectionError, ValueError):
                self._etcd_error()
                continue
            self.set_members(members)

    def set_members(self, members: Sequence[Union[str, FleetMember]]) -> None:
        """Replaces the member list; a member whose id and address stay keeps its state."""
        wanted = _members_of(members)
        if [m.info for m in self._fleet.members] == wanted:
            return
        for c in self._fleet.apply(wanted):
            c.close()

    def placement(self, agent: int, session_key: int) -> List[str]:
        key = fleet_key(self.tenant, agent, session_key)
        return [m.info.id for m in self._fleet.order(key, time.monotonic())]

    @property
    def counters(self) -> FleetCounters:
        return self._fleet.counters

    @property
    def members_down(self) -> int:
        return sum(1 for m in self._fleet.members if m.down)

    async def _client(self, m: _Member) -> AsyncClient:
        lock = self._opening.setdefault(id(m), asyncio.Lock())
        async with lock:
            if m.client is None:
                m.client = await AsyncClient.connect(
                    m.info.host,
                    m.info.port,
                    tenant=self.tenant,
                    retry=self.retry,
                    sock=_socket_for(self.sock_factory, m.info),
                )
            return m.client

    async def request(self, agent: int, payload: Union[bytes, bytearray, memoryview, str], **kw: Any) -> bytes:
        return (await self.call(agent, payload, **kw)).reply.payload

    async def call(
        self,
        agent: int,
        payload: Union[bytes, bytearray, memoryview, str],
        *,
        priority: Union[Priority, int] = Priority.INTERACTIVE,
        deadline: float = 1.0,
        session_key: int = 0,
        trace: Optional[TraceContext] = None,
        idempotent: bool = True,
        retry: Optional[RetryPolicy] = None,
        request_id: Optional[int] = None,
    ) -> FleetReply:
        """As FleetClient.call."""
        fleet = self._fleet
        fleet.counters.calls += 1
        end = time.monotonic() + deadline
        order = fleet.order(fleet.key_for(self.tenant, agent, session_key), time.monotonic())
        if not order:
            fleet.counters.failed_calls += 1
            raise AxonClientError("the fleet has no members (check the static list or etcd)")
        if not idempotent:
            order = order[:1]  # no failover: another member would run it again
        rid = request_id if request_id is not None else new_request_id()
        last_error: Optional[Exception] = None
        tried = 0
        for n, m in enumerate(order):
            now = time.monotonic()
            if now >= end:
                break
            last = n + 1 == len(order)
            if tried:
                fleet.counters.failovers += 1
            tried += 1
            try:
                client = await self._client(m)
                reply = await client.call(
                    agent,
                    payload,
                    priority=priority,
                    deadline=fleet.budget(end - now, last),
                    session_key=session_key,
                    trace=trace,
                    idempotent=idempotent,
                    retry=retry,
                    request_id=rid,
                )
            except AxonErrorReply as e:
                fleet.mark_up(m)
                last_error = e
                if e.code in _FAILOVER_CODES:
                    continue
                raise
            except (AxonTimeout, OSError) as e:
                last_error = e
                # Other calls may still use this member's client: it is closed only when the
                # member leaves the fleet, not here.
                if not m.down:
                    fleet.counters.member_down += 1
                    m.down, m.probe_wait = True, fleet.probe_after
                m.probe_at = time.monotonic() + m.probe_wait
                m.probe_wait = min(m.probe_wait * 2, max(fleet.probe_after, fleet.probe_max))
                continue
            fleet.mark_up(m)
            return FleetReply(reply, m.info.id, tried)
        fleet.counters.failed_calls += 1
        if last_error is None:
            raise AxonTimeout("the call's deadline ran out before any member was tried", rid, 0)
        raise last_error

    async def close(self) -> None:
        if self._watch is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._watch.stop)
            self._watch = None
        if self._poller is not None:
            self._poller.cancel()
            try:
                await self._poller
            except asyncio.CancelledError:
                pass
        for m in self._fleet.members:
            if m.client is not None:
                m.client.close()
                m.client = None

    async def __aenter__(self) -> "AsyncFleetClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


__all__ = [
    "AsyncFleetClient",
    "FleetClient",
    "FleetCounters",
    "FleetMember",
    "FleetReply",
    "fleet_key",
    "member_hash",
    "mix64",
    "parse_etcd_members",
    "parse_member",
    "read_etcd_members",
    "rendezvous_order",
]
