#!/usr/bin/env python3
"""agent_tools.py: an async agent loop that runs its tool calls through axon.

A planning step produces several tool calls; they run concurrently (asyncio.gather) as AXP
requests to the agents that serve each tool, with a deadline per call, the conversation's
session key for sticky routing, and the agent step's trace context. A failed tool becomes a
tool message the model can read, as agent frameworks do.

    python3 examples/agent_tools.py --host 10.0.0.1 --tenant 1 --search-agent 7 --fetch-agent 8

The handlers behind the agents are yours (any axon worker; examples/python_echo_worker.py
echoes, which is enough to try this).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any, Dict, List

import axon_client as ax


async def call_tool(client: ax.AsyncClient, agent: int, name: str, args: Dict[str, Any], **kw: Any) -> Dict[str, Any]:
    """One tool call: JSON in, JSON (or the error, for the model to read) out."""
    payload = json.dumps({"tool": name, "arguments": args}).encode()
    try:
        reply = await client.request(agent, payload, **kw)
        return {"tool": name, "ok": True, "content": reply.decode(errors="replace")}
    except ax.AxonErrorReply as e:  # typed: e.code_name is the AXP error (handler_error, ...)
        return {"tool": name, "ok": False, "error": e.code_name, "detail": e.detail}
    except (ax.AxonTimeout, ax.AxonBusy) as e:
        return {"tool": name, "ok": False, "error": type(e).__name__}


async def agent_step(client: ax.AsyncClient, search_agent: int, fetch_agent: int, session: int) -> List[Dict[str, Any]]:
    trace = ax.TraceContext.new()  # or TraceContext.from_traceparent(incoming_header)
    plan = [
        (search_agent, "web_search", {"q": "axon data plane"}, ax.Priority.INTERACTIVE),
        (search_agent, "web_search", {"q": "AF_XDP zero copy"}, ax.Priority.INTERACTIVE),
        (fetch_agent, "fetch_page", {"url": "https://example.org/"}, ax.Priority.BACKGROUND),
    ]
    return await asyncio.gather(
        *(
            call_tool(client, agent, name, args, priority=prio, deadline=2.0, session_key=session, trace=trace)
            for agent, name, args, prio in plan
        )
    )


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=7400)
    p.add_argument("--tenant", type=int, required=True)
    p.add_argument("--search-agent", type=int, required=True)
    p.add_argument("--fetch-agent", type=int, required=True)
    a = p.parse_args()
    retry = ax.RetryPolicy(attempt_timeout=0.3, max_attempts=5)
    async with await ax.AsyncClient.connect(a.host, a.port, tenant=a.tenant, retry=retry) as client:
        for result in await agent_step(client, a.search_agent, a.fetch_agent, session=0xC0FFEE):
            print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
