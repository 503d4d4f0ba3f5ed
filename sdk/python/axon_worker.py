"""axon_worker: Python binding of the axon worker SDK's C ABI (libaxon_worker.so), via ctypes.

An agent worker receives requests from the data plane through its own shared-memory segment
and answers each one, in place or in a buffer the data plane loaned out, without any copy
across the process boundary::

    import axon_worker

    stop = axon_worker.StopFlag().install()          # SIGTERM/SIGINT set it
    with axon_worker.Worker.from_environment() as worker:
        def echo(request, reply):
            buf = reply.loan(request.length)          # writable memoryview, or None
            if buf is None:
                reply.in_place()                      # the request's buffer holds the echo
            else:
                buf[:request.length] = request.data   # one memcpy, straight into shared memory
            reply.commit(request.length)
        worker.run(echo, stop)

The library is found through AXON_WORKER_LIB (a path to libaxon_worker.so; axon-shm-demo sets
it for the workers it starts), then build/*/sdk/ of this source tree (release builds first,
sanitizer builds never: they cannot be loaded into an uninstrumented python), then the system
library path. The struct layouts below mirror axon_worker.h and are checked against the
loaded library (ABI version and sizeof(axon_request)) at load time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import signal
import sys
import traceback
from typing import Callable, List, Optional

ABI_VERSION = 3
MAX_BURST = 32

# axon_status
OK = 0
ERR_INVALID_ARGUMENT = -1
ERR_HANDOFF_FAILED = -12
ERR_AGAIN = -20
ERR_NO_LOAN = -21
ERR_REPLY_TOO_LARGE = -22
ERR_STOPPED = -23
ERR_DATAPLANE_EXITED = -24
ERR_INTERNAL = -30

# axon_reply_status
REPLY_OK = 0
REPLY_HANDLER_ERROR = 1
REPLY_TOO_LARGE = 2
REPLY_DEADLINE_EXCEEDED = 3  # the SDK answers expired requests with it; a handler may too

# Default starvation-protection share (Worker.set_background_every, AXON_BACKGROUND_EVERY).
DEFAULT_BACKGROUND_EVERY = 8


class AxonError(Exception):
    """A failed SDK call: `status` is the axon_status code, the message says what to do."""

    def __init__(self, status: int, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.status = status
        self.name = name
        self.message = message


# --- struct mirrors of axon_worker.h ------------------------------------------------------


class _Request(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("length", ctypes.c_uint32),
        ("capacity", ctypes.c_uint32),
        ("request_id", ctypes.c_uint64),
        ("tenant_id", ctypes.c_uint32),
        ("agent_id", ctypes.c_uint32),
        ("session_key", ctypes.c_uint64),
        ("deadline_us", ctypes.c_uint32),
        ("priority", ctypes.c_uint8),
        ("trace_flags", ctypes.c_uint8),
        ("reserved0", ctypes.c_uint8 * 2),
        ("trace_id", ctypes.c_uint8 * 16),
        ("parent_span_id", ctypes.c_uint8 * 8),
        ("enqueue_ns", ctypes.c_uint64),
        ("internal_", ctypes.c_uint64 * 20),
    ]


class _Buffer(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("capacity", ctypes.c_uint32),
        ("offset", ctypes.c_uint32),
        ("in_place", ctypes.c_uint32),
        ("reserved0", ctypes.c_uint32),
    ]


class _Stats(ctypes.Structure):
    _fields_ = [
        ("received", ctypes.c_uint64),
        ("completed", ctypes.c_uint64),
        ("loan_failures", ctypes.c_uint64),
        ("reply_ring_full", ctypes.c_uint64),
        ("sleeps", ctypes.c_uint64),
        ("generation", ctypes.c_uint64),
        ("worker_id", ctypes.c_uint32),
        ("hugepages", ctypes.c_uint32),
        ("interactive", ctypes.c_uint64),
        ("background", ctypes.c_uint64),
        ("deadline_expired", ctypes.c_uint64),
        ("background_forced", ctypes.c_uint64),
        ("background_every", ctypes.c_uint32),
        ("reserved0", ctypes.c_uint32),
    ]


class _TraceContext(ctypes.Structure):
    _fields_ = [
        ("trace_id", ctypes.c_uint8 * 16),
        ("parent_span_id", ctypes.c_uint8 * 8),
        ("span_id", ctypes.c_uint8 * 8),
        ("flags", ctypes.c_uint8),
        ("sampled", ctypes.c_uint8),
        ("valid", ctypes.c_uint8),
        ("reserved0", ctypes.c_uint8 * 5),
    ]


TRACEPARENT_SIZE = 56  # AXON_TRACEPARENT_SIZE: 55 characters and a NUL

assert ctypes.sizeof(_TraceContext) == 40
assert ctypes.sizeof(_Request) == 240 and ctypes.sizeof(_Buffer) == 24 and ctypes.sizeof(_Stats) == 96

# --- loading the library ---------------------------------------------------------------------


def _candidates() -> List[str]:
    found = []
    env = os.environ.get("AXON_WORKER_LIB")
    if env:
        return [env]  # an explicit choice is never second-guessed
    root = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    builds = glob.glob(os.path.join(root, "build", "*", "sdk", "libaxon_worker.so"))
    builds = [b for b in builds if not any(s in b.split(os.sep)[-3] for s in ("asan", "tsan"))]
    # The quickstart's release build first, then the most recently built one.
    builds.sort(key=lambda p: (p.split(os.sep)[-3] != "release", -os.path.getmtime(p)))
    found.extend(builds)
    system = ctypes.util.find_library("axon_worker")
    if system:
        found.append(system)
    return found


def _bind(lib: ctypes.CDLL) -> None:
    P = ctypes.POINTER
    handle = ctypes.c_void_p
    vint = P(ctypes.c_int)
    sig = {
        "axon_worker_abi_version": (ctypes.c_uint32, []),
        "axon_worker_request_size": (ctypes.c_uint32, []),
        "axon_worker_last_error": (ctypes.c_char_p, []),
        "axon_status_name": (ctypes.c_char_p, [ctypes.c_int]),
        "axon_worker_attach_fd": (ctypes.c_int, [ctypes.c_int, ctypes.c_uint64, P(handle)]),
        "axon_worker_connect": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_int, P(handle)]),
        "axon_worker_from_environment": (ctypes.c_int, [ctypes.c_int, P(handle)]),
        "axon_worker_detach": (None, [handle]),
        "axon_worker_close": (None, [handle]),
        "axon_worker_receive_burst": (ctypes.c_int, [handle, P(_Request), ctypes.c_uint32]),
        "axon_worker_wait": (ctypes.c_int, [handle, vint]),
        "axon_worker_loan": (ctypes.c_int, [handle, ctypes.c_uint32, P(_Buffer)]),
        "axon_worker_in_place": (ctypes.c_int, [handle, P(_Request), P(_Buffer)]),
        "axon_worker_complete": (
            ctypes.c_int,
            [handle, P(_Request), P(_Buffer), ctypes.c_uint32, ctypes.c_uint32],
        ),
        "axon_worker_try_flush": (ctypes.c_int, [handle]),
        "axon_worker_flush": (ctypes.c_int, [handle, vint]),
        "axon_worker_set_wait_policy": (
            ctypes.c_int,
            [handle, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint64],
        ),
        "axon_worker_set_background_every": (ctypes.c_int, [handle, ctypes.c_uint32]),
        "axon_worker_get_stats": (ctypes.c_int, [handle, P(_Stats)]),
        "axon_request_trace": (ctypes.c_int, [P(_Request), P(_TraceContext)]),
        "axon_request_traceparent": (ctypes.c_int, [P(_Request), ctypes.c_char_p, ctypes.c_size_t]),
        "axon_request_handler_traceparent": (ctypes.c_int, [P(_Request), ctypes.c_char_p, ctypes.c_size_t]),
    }
    for name, (restype, argtypes) in sig.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


def _load() -> ctypes.CDLL:
    tried = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path}: {e}")
            continue
        _bind(lib)
        if lib.axon_worker_abi_version() != ABI_VERSION or lib.axon_worker_request_size() != ctypes.sizeof(_Request):
            raise ImportError(
                f"{path} speaks C ABI {lib.axon_worker_abi_version()} (axon_request of "
                f"{lib.axon_worker_request_size()} bytes) but this binding expects ABI {ABI_VERSION} "
                f"({ctypes.sizeof(_Request)} bytes); use the axon_worker.py of the same axon release"
            )
        lib._axon_path = path  # type: ignore[attr-defined]
        return lib
    detail = "; ".join(tried) if tried else "none found"
    raise ImportError(
        "cannot load libaxon_worker.so (" + detail + "). Build it (cmake --build --preset release) "
        "or point AXON_WORKER_LIB at it"
    )


_lib = _load()
library_path: str = _lib._axon_path  # type: ignore[attr-defined]


def _error(status: int) -> AxonError:
    return AxonError(status, _lib.axon_status_name(status).decode(), _lib.axon_worker_last_error().decode())


def _bytes_at(address: int, length: int) -> memoryview:
    """A memoryview over shared memory, no copy. Valid only while the request/buffer is."""
    return memoryview((ctypes.c_ubyte * length).from_address(address)).cast("B")


# --- public API ------------------------------------------------------------------------------------


class StopFlag:
    """The stop flag the SDK polls (a C int). Set it from a signal handler or another thread."""

    def __init__(self) -> None:
        self._value = ctypes.c_int(0)
        self._ref = ctypes.byref(self._value)

    def set(self) -> None:
        self._value.value = 1

    def is_set(self) -> bool:
        return self._value.value != 0

    __bool__ = is_set

    def install(self, signals=(signal.SIGTERM, signal.SIGINT)) -> "StopFlag":
        """Makes the given signals set this flag (clean shutdown instead of KeyboardInterrupt)."""
        for signo in signals:
            signal.signal(signo, lambda _signo, _frame: self.set())
        return self


class Request:
    """One request, readable in place until it is completed. `data` is a read-only memoryview of
    the payload in shared memory (no copy); `bytes(request.data)` copies it out."""

    __slots__ = ("_raw",)

    def __init__(self, raw: _Request):
        self._raw = raw

    @property
    def data(self) -> memoryview:
        return _bytes_at(self._raw.data, self._raw.length).toreadonly()

    length = property(lambda self: self._raw.length)
    capacity = property(lambda self: self._raw.capacity)
    request_id = property(lambda self: self._raw.request_id)
    tenant_id = property(lambda self: self._raw.tenant_id)
    agent_id = property(lambda self: self._raw.agent_id)
    session_key = property(lambda self: self._raw.session_key)
    deadline_us = property(lambda self: self._raw.deadline_us)
    priority = property(lambda self: self._raw.priority)
    trace_flags = property(lambda self: self._raw.trace_flags)
    enqueue_ns = property(lambda self: self._raw.enqueue_ns)
    trace_id = property(lambda self: bytes(self._raw.trace_id))
    parent_span_id = property(lambda self: bytes(self._raw.parent_span_id))

    # W3C trace context (docs/protocol.md §5). With it, the SDK made the handler's own span
    # (span_id, random and non-zero); the reply carries it back to the client.
    def _trace(self) -> _TraceContext:
        out = _TraceContext()
        status = _lib.axon_request_trace(ctypes.byref(self._raw), ctypes.byref(out))
        if status < 0:
            raise _error(status)
        return out

    def _text(self, fn) -> Optional[str]:
        buf = ctypes.create_string_buffer(TRACEPARENT_SIZE)
        status = fn(ctypes.byref(self._raw), buf, TRACEPARENT_SIZE)
        if status < 0:
            raise _error(status)
        return buf.value.decode() if status == 1 else None

    has_trace = property(lambda self: bool(self._trace().valid))
    sampled = property(lambda self: bool(self._trace().sampled))
    span_id = property(lambda self: bytes(self._trace().span_id))
    # "00-<trace id>-<caller's span>-<flags>", or None without trace context.
    traceparent = property(lambda self: self._text(_lib.axon_request_traceparent))
    # "00-<trace id>-<handler's span>-<flags>": the parent for the handler's own spans, or None.
    handler_traceparent = property(lambda self: self._text(_lib.axon_request_handler_traceparent))

    def __repr__(self) -> str:
        return f"Request(id={self.request_id}, tenant={self.tenant_id}, agent={self.agent_id}, length={self.length})"


class Buffer:
    """Where a reply is written: a loaned buffer or the request's own. `view` is writable."""

    __slots__ = ("_raw",)

    def __init__(self, raw: _Buffer):
        self._raw = raw

    @property
    def view(self) -> memoryview:
        return _bytes_at(self._raw.data, self._raw.capacity)

    capacity = property(lambda self: self._raw.capacity)
    in_place = property(lambda self: bool(self._raw.in_place))


class ReplyWriter:
    """Given to a run() handler for one request. Take one buffer (loan or in_place), write the reply
    into it, then commit(length). Not committing, or raising, sends an explicit error reply."""

    __slots__ = ("_worker", "_request", "_buffer", "length", "status", "committed")

    def __init__(self, worker: "Worker", request: Request):
        self._worker = worker
        self._request = request
        self._buffer: Optional[_Buffer] = None
        self.length = 0
        self.status = REPLY_OK
        self.committed = False

    def loan(self, size: int) -> Optional[memoryview]:
        """A loaned buffer of at least `size` bytes (zero copy), or None when none is free."""
        buf = self._worker.loan(size)
        if buf is None:
            return None
        self._buffer = buf._raw
        return buf.view

    def in_place(self) -> memoryview:
        """The request's own buffer (its payload is still there until you overwrite it)."""
        buf = self._worker.in_place(self._request)
        self._buffer = buf._raw
        return buf.view

    def commit(self, length: int, status: int = REPLY_OK) -> None:
        self.length = length
        self.status = status
        self.committed = True

    def send(self, data) -> None:
        """Convenience: copies a bytes-like reply into a loan (or in place if it fits) and commits."""
        n = len(data)
        view = self.loan(n)
        if view is None:
            if n > self._request.capacity:
                self.commit(0, REPLY_TOO_LARGE)
                return
            view = self.in_place()
        view[:n] = data
        self.commit(n)


class Worker:
    """One attached worker segment. Use from one thread at a time."""

    def __init__(self, handle: ctypes.c_void_p):
        self._h = handle
        self._burst = (_Request * MAX_BURST)()
        self._handler_errors = 0

    # --- attach -------------------------------------------------------------------------------
    @classmethod
    def attach_fd(cls, fd: int, expected_generation: int = 0) -> "Worker":
        """Maps the segment behind fd (ownership of fd passes to the SDK)."""
        h = ctypes.c_void_p()
        rc = _lib.axon_worker_attach_fd(fd, expected_generation, ctypes.byref(h))
        if rc != OK:
            raise _error(rc)
        return cls(h)

    @classmethod
    def connect(cls, socket_path: str, timeout_ms: int = -1) -> "Worker":
        """Retries a refused handoff until timeout_ms (negative: AXON_WORKER_CONNECT_TIMEOUT_MS or 5000)."""
        h = ctypes.c_void_p()
        rc = _lib.axon_worker_connect(os.fsencode(socket_path), timeout_ms, ctypes.byref(h))
        if rc != OK:
            raise _error(rc)
        return cls(h)

    @classmethod
    def from_environment(cls, timeout_ms: int = -1) -> "Worker":
        """Attaches through AXON_WORKER_FD or AXON_WORKER_SOCKET, as set by the data plane."""
        h = ctypes.c_void_p()
        rc = _lib.axon_worker_from_environment(timeout_ms, ctypes.byref(h))
        if rc != OK:
            raise _error(rc)
        return cls(h)

    def _handle(self) -> ctypes.c_void_p:
        if not self._h:
            raise AxonError(ERR_INVALID_ARGUMENT, "AXON_ERR_INVALID_ARGUMENT", "the worker is closed")
        return self._h

    # --- hot path -----------------------------------------------------------------------------
    def receive(self, max_requests: int = MAX_BURST) -> List[Request]:
        """Up to max_requests requests (never blocks; [] when none are waiting), in the order to
        serve them: interactive first, one background request after every `background_every`
        interactive ones while background waits, background earliest deadline first; a request
        whose deadline has passed is answered REPLY_DEADLINE_EXCEEDED by the SDK and not returned
        (the ordering lives in libaxon_worker, so run() gets it too). Each Request stays valid
        until it is completed."""
        n = _lib.axon_worker_receive_burst(self._handle(), self._burst, min(max_requests, MAX_BURST))
        if n < 0:
            raise _error(n)
        return [Request(_Request.from_buffer_copy(self._burst[i])) for i in range(n)]

    def wait(self, stop: Optional[StopFlag] = None) -> bool:
        """Spins, then sleeps until requests arrive, the sleep timeout passes or stop is set."""
        rc = _lib.axon_worker_wait(self._handle(), stop._ref if stop is not None else None)
        if rc < 0:
            raise _error(rc)
        return rc == 1

    def loan(self, size: int) -> Optional[Buffer]:
        raw = _Buffer()
        rc = _lib.axon_worker_loan(self._handle(), size, ctypes.byref(raw))
        if rc == ERR_NO_LOAN:
            return None
        if rc != OK:
            raise _error(rc)
        return Buffer(raw)

    def in_place(self, request: Request) -> Buffer:
        raw = _Buffer()
        rc = _lib.axon_worker_in_place(self._handle(), ctypes.byref(request._raw), ctypes.byref(raw))
        if rc != OK:
            raise _error(rc)
        return Buffer(raw)

    def try_complete(self, request: Request, buffer: Buffer, length: int, status: int = REPLY_OK) -> bool:
        """Queues the reply; False if the reply ring is full (flush, then retry)."""
        rc = _lib.axon_worker_complete(
            self._handle(), ctypes.byref(request._raw), ctypes.byref(buffer._raw), length, status
        )
        if rc == ERR_AGAIN:
            return False
        if rc != OK:
            raise _error(rc)
        return True

    def complete(self, request: Request, buffer: Buffer, length: int, status: int = REPLY_OK) -> None:
        """Queues the reply, flushing first if the reply ring is full."""
        while not self.try_complete(request, buffer, length, status):
            self.flush()

    def flush(self, stop: Optional[StopFlag] = None) -> bool:
        """Publishes queued replies; False if stop was set while the reply ring stayed full."""
        rc = _lib.axon_worker_flush(self._handle(), stop._ref if stop is not None else None)
        if rc == ERR_STOPPED:
            return False
        if rc != OK:
            raise _error(rc)
        return True

    def run(self, handler: Callable[[Request, ReplyWriter], None], stop: StopFlag) -> None:
        """Receives and calls handler(request, reply) for each request until stop is set. Every
        request gets exactly one reply: a handler that raises or does not commit produces an
        explicit handler-error reply (the traceback of the first few goes to stderr)."""
        h = self._handle()
        lib = _lib
        burst = self._burst
        stop_ref = stop._ref
        while not stop:
            n = lib.axon_worker_receive_burst(h, burst, MAX_BURST)
            if n < 0:
                raise _error(n)
            if n == 0:
                rc = lib.axon_worker_wait(h, stop_ref)
                if rc == ERR_DATAPLANE_EXITED:
                    raise _error(rc)  # nothing will arrive any more
                continue
            for i in range(n):
                raw = burst[i]  # a view into the burst array, valid until the next receive
                request = Request(raw)
                writer = ReplyWriter(self, request)
                failed = False
                try:
                    handler(request, writer)
                except Exception:  # noqa: BLE001 - a handler bug must not take the worker down
                    failed = True
                    self._handler_errors += 1
                    if self._handler_errors <= 3:
                        traceback.print_exc(file=sys.stderr)
                buf = writer._buffer
                length, status = writer.length, writer.status
                valid = (REPLY_OK, REPLY_HANDLER_ERROR, REPLY_TOO_LARGE, REPLY_DEADLINE_EXCEEDED)
                if failed or not writer.committed or status not in valid:
                    length, status = 0, REPLY_HANDLER_ERROR
                elif buf is not None and length > buf.capacity:
                    length, status = 0, REPLY_TOO_LARGE
                elif buf is None and length > 0:
                    length, status = 0, REPLY_TOO_LARGE
                if buf is None:
                    # A failed reply keeps a loan the handler took (so it returns to the pool);
                    # with no buffer at all, the error goes back in place.
                    buf = _Buffer()
                    rc = lib.axon_worker_in_place(h, ctypes.byref(raw), ctypes.byref(buf))
                    if rc != OK:
                        raise _error(rc)
                rc = lib.axon_worker_complete(h, ctypes.byref(raw), ctypes.byref(buf), length, status)
                if rc == ERR_AGAIN:
                    if lib.axon_worker_flush(h, stop_ref) != OK:
                        return  # stopping with the reply ring full: the data plane reports the rest lost
                    rc = lib.axon_worker_complete(h, ctypes.byref(raw), ctypes.byref(buf), length, status)
                if rc != OK:
                    raise _error(rc)
            if lib.axon_worker_flush(h, stop_ref) != OK:
                return
        lib.axon_worker_flush(h, stop_ref)

    # --- tuning, introspection, shutdown --------------------------------------------------------
    def set_wait_policy(self, spin_min: int = 64, spin_max: int = 1 << 16, sleep_timeout_ns: int = 100_000_000):
        rc = _lib.axon_worker_set_wait_policy(self._handle(), spin_min, spin_max, sleep_timeout_ns)
        if rc != OK:
            raise _error(rc)

    def set_background_every(self, every: int = DEFAULT_BACKGROUND_EVERY) -> None:
        """Starvation protection: after `every` interactive requests in a row while background
        work waits, serve one background request; 0 = strict priority. The default is 8, or
        AXON_BACKGROUND_EVERY from the environment at attach."""
        rc = _lib.axon_worker_set_background_every(self._handle(), every)
        if rc != OK:
            raise _error(rc)

    def stats(self) -> dict:
        s = _Stats()
        rc = _lib.axon_worker_get_stats(self._handle(), ctypes.byref(s))
        if rc != OK:
            raise _error(rc)
        return {name: getattr(s, name) for name, _ in _Stats._fields_}

    @property
    def worker_id(self) -> int:
        return self.stats()["worker_id"]

    @property
    def generation(self) -> int:
        return self.stats()["generation"]

    @property
    def hugepages(self) -> bool:
        return bool(self.stats()["hugepages"])

    def detach(self) -> None:
        """Flushes queued replies and marks the segment detached (clean shutdown)."""
        if self._h:
            _lib.axon_worker_detach(self._h)

    def close(self) -> None:
        if self._h:
            _lib.axon_worker_close(self._h)
            self._h = ctypes.c_void_p()

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc) -> None:
        self.detach()
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
