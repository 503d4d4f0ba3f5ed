#!/usr/bin/env python3
"""python_echo_worker.py: the echo worker in Python, on the ctypes binding (sdk/python/axon_worker.py).

Same behaviour as echo_worker and echo_worker_c: each payload is copied into a buffer the data
plane loaned out (one memcpy, straight into shared memory) or, when no loan is free, left in
place as its own reply. SIGTERM/SIGINT stop it cleanly.

    axon-shm-demo --worker-binary examples/python_echo_worker.py
    python3 examples/python_echo_worker.py --socket /path/to/worker.sock
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sdk", "python"))

import axon_worker  # noqa: E402  (found through the path above)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", help="handoff socket to connect to (default: AXON_WORKER_FD/AXON_WORKER_SOCKET)")
    parser.add_argument("--work-ns", type=int, default=0, help="busy-spin this long per request (simulated work)")
    args = parser.parse_args()
    if args.work_ns < 0:
        parser.error("--work-ns must not be negative")

    stop = axon_worker.StopFlag().install()
    try:
        worker = (
            axon_worker.Worker.connect(args.socket) if args.socket else axon_worker.Worker.from_environment()
        )
    except axon_worker.AxonError as e:
        print(f"python_echo_worker: cannot attach: {e}", file=sys.stderr)
        return 1

    counts = {"loaned": 0, "in_place": 0}
    work_ns = args.work_ns

    def echo(request: axon_worker.Request, reply: axon_worker.ReplyWriter) -> None:
        if work_ns:
            until = time.monotonic_ns() + work_ns
            while time.monotonic_ns() < until:
                pass
        n = request.length
        buf = reply.loan(n)
        if buf is not None:
            buf[:n] = request.data
            counts["loaned"] += 1
        else:
            reply.in_place()  # the request's own buffer already holds the echo
            counts["in_place"] += 1
        reply.commit(n)

    started = time.monotonic()
    with worker:
        try:
            worker.run(echo, stop)
        except axon_worker.AxonError as e:
            if e.status != axon_worker.ERR_DATAPLANE_EXITED:
                raise
            print(f"python_echo_worker[{os.getpid()}]: the data plane exited; stopping", file=sys.stderr)
        worker.detach()
        s = worker.stats()
    print(
        f"python_echo_worker[{os.getpid()}]: worker {s['worker_id']} generation {s['generation']} "
        f"({'2 MiB hugepages' if s['hugepages'] else '4 KiB pages'}): {s['received']} received, "
        f"{s['completed']} completed ({counts['loaned']} loaned, {counts['in_place']} in place), "
        f"{s['loan_failures']} loan failures, {s['sleeps']} sleeps in {time.monotonic() - started:.1f} s; "
        f"detached (library {axon_worker.library_path})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
