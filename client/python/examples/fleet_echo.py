#!/usr/bin/env python3
"""fleet_echo.py: sessions spread over a fleet of appliances, with failover.

Sends --sessions requests, one per session key, through a FleetClient and prints which
appliance served each session, then the fleet's counters. Kill an appliance and run it again:
only that appliance's sessions move.

    python3 examples/fleet_echo.py --member 10.0.0.1:7400 --member 10.0.0.2:7400 --tenant 1 --agent 7
    python3 examples/fleet_echo.py --etcd http://10.0.0.9:2379 --tenant 1 --agent 7

Any axon worker behind the agent will do (examples/python_echo_worker.py echoes).
"""

from __future__ import annotations

import argparse
import collections
import sys

import axon_client as ax


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--member", action="append", default=[], help="HOST[:PORT] of an appliance (repeat)")
    ap.add_argument("--etcd", action="append", default=[], help="etcd endpoint (http://host:2379) to read members from")
    ap.add_argument("--prefix", default="/axon/", help="the fleet's etcd prefix")
    ap.add_argument("--tenant", type=int, required=True)
    ap.add_argument("--agent", type=int, required=True)
    ap.add_argument("--sessions", type=int, default=12)
    ap.add_argument("--deadline", type=float, default=1.0, help="seconds per request, failover included")
    args = ap.parse_args()
    if not args.member and not args.etcd:
        ap.error("give --member (repeat) or --etcd")

    fleet = ax.FleetClient(args.member or None, tenant=args.tenant, etcd_endpoints=args.etcd or None,
                           etcd_prefix=args.prefix)  # fmt: skip
    served: collections.Counter[str] = collections.Counter()
    failed = 0
    with fleet:
        for session in range(1, args.sessions + 1):
            try:
                r = fleet.call(args.agent, f"session {session}".encode(), session_key=session, deadline=args.deadline)
            except ax.AxonClientError as e:
                failed += 1
                print(f"session {session:3}: {type(e).__name__}: {e}")
                continue
            served[r.member] += 1
            print(f"session {session:3}: {r.member} (members tried: {r.members_tried}) -> {r.reply.payload!r}")
        print("served per member:", dict(served))
        print("counters:", fleet.counters)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
