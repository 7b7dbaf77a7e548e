#!/usr/bin/env python3
"""Drives an MCP server (bare or behind `signoff mcp`) with the official
Python MCP SDK, for the MCP gate's end-to-end tests and latency figures.

  mcp_drive.py fs ROOT -- CMD ARGS...          filesystem scenario
  mcp_drive.py everything -- CMD ARGS...       pass-through scenario
  mcp_drive.py latency N -- CMD ARGS...        N allowed calls, timed
  mcp_drive.py remote -- --url URL             server-everything behind the
                                               HTTP proxy (`signoff mcp --listen`)
  mcp_drive.py modern -- CMD ARGS...           protocol 2026-07-28 against
                                               scripts/mcp_modern_server.py,
                                               multi-round-trip calls included

After `--`, `--url URL` connects with the Streamable HTTP client instead of
starting CMD over stdio (every scenario but fs).

Scenarios print one JSON object on stdout; the Rust test asserts on it.
The fs, remote and modern scenarios approve waiting calls themselves
through the gateway's API (SIGNOFF_URL, REVIEWER_TOKEN), as a reviewer
would.
"""
import asyncio
import contextlib
import json
import os
import re
import statistics
import sys
import time
import urllib.request

from mcp import Client, ClientSession, StdioServerParameters
from mcp import types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client


def text_of(result):
    return "".join(getattr(c, "text", "") for c in result.content)


def shown(result):
    return {"isError": bool(result.is_error), "text": text_of(result)}


def approve(request_id):
    url = f"{os.environ['SIGNOFF_URL']}/v1/requests/{request_id}/reviews"
    req = urllib.request.Request(
        url,
        data=json.dumps({"decision": "approve", "reason": "looks fine"}).encode(),
        headers={
            "Authorization": f"Bearer {os.environ['REVIEWER_TOKEN']}",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status


def request_id(text):
    m = re.search(r"request (\w{26})", text)
    return m.group(1) if m else None


async def session_for(cmd):
    if cmd[:1] == ["--url"]:
        return streamable_http_client(cmd[1])
    params = StdioServerParameters(command=cmd[0], args=cmd[1:], env=dict(os.environ))
    return stdio_client(params)


@contextlib.asynccontextmanager
async def client_session(cmd):
    """A handshake-era ClientSession over stdio or Streamable HTTP, as every
    scenario but modern opens it."""
    async with await session_for(cmd) as transport:
        r, w = streams(transport)
        async with ClientSession(r, w) as s:
            yield s


def progress_recorder():
    """A progress callback and the list it appends each notification to, to
    assert on what the server reported."""
    seen = []

    async def on_progress(p, total, message):
        seen.append({"progress": p, "total": total, "message": message})

    return seen, on_progress


def streams(transport):
    """(read, write) of what a client transport yields."""
    return transport[0], transport[1]


async def survey(s, out):
    """The pass-through part the everything and remote scenarios share:
    initializes, lists tools, prompts and resources, reads one resource and
    one prompt into `out`; returns the tools."""
    init = await s.initialize()
    out["server"] = init.server_info.name
    out["protocol_version"] = init.protocol_version
    tools = (await s.list_tools()).tools
    out["tools"] = sorted(t.name for t in tools)
    out["prompts"] = sorted(p.name for p in (await s.list_prompts()).prompts)
    resources = (await s.list_resources()).resources
    out["resources"] = len(resources)
    if resources:
        out["resource_read"] = len((await s.read_resource(resources[0].uri)).contents)
    if out["prompts"]:
        simple = next((p for p in out["prompts"] if "simple" in p), out["prompts"][0])
        out["prompt_messages"] = len((await s.get_prompt(simple, {})).messages)
    return tools


async def fs(root, cmd):
    out = {}
    ws = os.path.join(root, "workspace")
    outside = os.path.join(root, "outside")
    async with client_session(cmd) as s:
        await s.initialize()
        tools = await s.list_tools()
        out["tools"] = sorted(t.name for t in tools.tools)
        out["read"] = shown(await s.call_tool("read_text_file", {"path": f"{ws}/hello.txt"}))
        out["write_in_workspace"] = shown(
            await s.call_tool("write_file", {"path": f"{ws}/new.txt", "content": "from the agent"})
        )
        args = {"path": f"{outside}/out.txt", "content": "approved content"}
        waiting = []

        async def on_progress(p, total, message):
            waiting.append(message)

        first = shown(await s.call_tool("write_file", args, progress_callback=on_progress))
        out["waiting_progress"] = waiting
        out["exists_before_approval"] = os.path.exists(args["path"])
        out["write_outside_first"] = first
        rid = request_id(first["text"])
        out["write_outside_request"] = rid
        changed = dict(args, content="something else")
        other = shown(await s.call_tool("write_file", changed))
        out["write_outside_changed"] = other
        out["write_outside_changed_request"] = request_id(other["text"])
        out["approved_status"] = approve(rid) if rid else None
        out["write_outside_retry"] = shown(await s.call_tool("write_file", args))
        out["forbidden"] = shown(await s.call_tool("read_text_file", {"path": f"{ws}/.env"}))
    print(json.dumps(out))


async def everything(cmd):
    out = {}
    progress, on_progress = progress_recorder()
    async with client_session(cmd) as s:
        tools = await survey(s, out)
        echo = next(t.name for t in tools if "echo" in t.name)
        out["echo"] = shown(await s.call_tool(echo, {"message": "hi \u001b[31mthere"}))
        long_op = next((t.name for t in tools if "long" in t.name.lower()), None)
        if long_op:
            res = await s.call_tool(
                long_op, {"duration": 1, "steps": 3}, progress_callback=on_progress
            )
            out["long"] = shown(res)
        out["progress"] = progress
    print(json.dumps(out))


async def latency(n, cmd):
    async with client_session(cmd) as s:
        await s.initialize()
        tools = (await s.list_tools()).tools
        echo = next(t.name for t in tools if "echo" in t.name)
        for _ in range(20):  # warm-up
            await s.call_tool(echo, {"message": "warm"})
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            res = await s.call_tool(echo, {"message": f"m{i}"})
            times.append((time.perf_counter() - t0) * 1000)
            if res.is_error:
                raise SystemExit(f"call failed: {text_of(res)}")
    times.sort()
    print(json.dumps({
        "n": n,
        "p50_ms": statistics.median(times),
        "p90_ms": times[int(0.9 * (n - 1))],
        "p99_ms": times[int(0.99 * (n - 1))],
        "mean_ms": statistics.fmean(times),
    }))


async def remote(cmd):
    """server-everything behind `signoff mcp --listen` with a policy that
    allows echo and the long-running operation, makes get-sum wait for one
    SRE and forbids get-env."""
    out = {}
    server_progress, on_server_progress = progress_recorder()
    async with client_session(cmd) as s:
        await survey(s, out)
        out["echo"] = shown(await s.call_tool("echo", {"message": "hi over http"}))
        out["long"] = shown(
            await s.call_tool(
                "trigger-long-running-operation",
                {"duration": 1, "steps": 3},
                progress_callback=on_server_progress,
            )
        )
        out["server_progress"] = server_progress

        # waits for approval; a reviewer approves while it waits, and the
        # same call runs: progress notes, then the server's result
        notes = []
        approved = []

        async def on_wait(p, total, message):
            notes.append(message)
            rid = request_id(message or "")
            if rid and not approved:
                approved.append(rid)
                out["approved_in_flight_status"] = await asyncio.to_thread(approve, rid)

        out["sum_in_flight"] = shown(
            await s.call_tool("get-sum", {"a": 2, "b": 3}, progress_callback=on_wait)
        )
        out["sum_in_flight_notes"] = notes
        out["sum_in_flight_request"] = approved[0] if approved else None

        # no progress token: the call waits --wait, then says so
        first = shown(await s.call_tool("get-sum", {"a": 4, "b": 5}))
        out["sum_waiting"] = first
        rid = request_id(first["text"])
        out["sum_waiting_request"] = rid
        out["sum_approved_status"] = approve(rid) if rid else None
        out["sum_retry"] = shown(await s.call_tool("get-sum", {"a": 4, "b": 5}))

        out["forbidden"] = shown(await s.call_tool("get-env", {}))
    print(json.dumps(out))


def shown_modern(result):
    """A 2026-07-28 tool result: its text, error flag and resultType."""
    return dict(shown(result), resultType=result.result_type)


async def until_approved(call, record):
    """Runs `call`; if signoff answers that it waits for approval, approves
    the request as a reviewer and runs the same call again. What happened
    goes into `record`; the final result is returned. Bare (no proxy), the
    first result is the final one."""
    first = shown_modern(await call())
    record["first"] = first
    rid = request_id(first["text"]) if first["isError"] else None
    if rid and "waiting for approval" in first["text"]:
        record["request"] = rid
        record["approved_status"] = approve(rid)
        return shown_modern(await call())
    return first


async def modern(cmd):
    """scripts/mcp_modern_server.py with the SDK's client negotiating
    (`mode="auto"`: server/discover, then 2026-07-28). `final` holds what
    the calls that ran gave, to compare bare and proxied; `gated` what the
    proxy did on the way (nothing bare)."""
    out = {"gated": {}}
    final = {}
    asked = []

    async def elicit(context, params):
        asked.append(params.message)
        if "tag" in params.message:
            return types.ElicitResult(action="accept", content={"tag": "urgent"})
        return types.ElicitResult(action="accept", content={"reason": "stale draft"})

    if cmd[:1] == ["--url"]:
        server = cmd[1]
    else:
        server = StdioServerParameters(command=cmd[0], args=cmd[1:], env=dict(os.environ))
    async with Client(server, mode="auto", elicitation_callback=elicit) as c:
        out["protocol_version"] = c.protocol_version
        discovered = c.session.discover_result
        out["discovered_versions"] = list(discovered.supported_versions) if discovered else None
        final["server"] = c.server_info.name if c.server_info else None
        final["tools"] = sorted(t.name for t in (await c.list_tools()).tools)
        final["read"] = shown_modern(await c.call_tool("read_note", {"title": "welcome"}))

        # needs approval: waits, approved, the retry with the same arguments runs
        write = {"title": "plan", "body": "ship it"}
        out["gated"]["write"] = {}
        final["write"] = await until_approved(
            lambda: c.call_tool("write_note", write), out["gated"]["write"]
        )
        final["read_written"] = shown_modern(await c.call_tool("read_note", {"title": "plan"}))

        # multi-round trip, driven by hand: the first leg asks, the
        # continuation (the user's answer and the server's state) waits for
        # approval, the retry with the same answer and state runs
        first = await c.session.call_tool(
            "delete_note", {"title": "plan"}, allow_input_required=True
        )
        final["delete_first_leg"] = {
            "resultType": first.result_type,
            "asks": sorted(
                req.params.message for req in (getattr(first, "input_requests", None) or {}).values()
            ),
            "has_state": bool(getattr(first, "request_state", None)),
        }
        if isinstance(first, types.InputRequiredResult):
            answers = {
                key: types.ElicitResult(action="accept", content={"reason": "stale draft"})
                for key in first.input_requests
            }
            out["delete_answer_keys"] = sorted(answers)

            async def continuation():
                return await c.session.call_tool(
                    "delete_note",
                    {"title": "plan"},
                    input_responses=answers,
                    request_state=first.request_state,
                    allow_input_required=True,
                )

            out["gated"]["delete"] = {}
            final["delete"] = await until_approved(continuation, out["gated"]["delete"])
        final["read_deleted"] = shown_modern(await c.call_tool("read_note", {"title": "plan"}))

        # multi-round trip driven by the SDK: both legs allowed, transparent
        final["tag"] = shown_modern(await c.call_tool("tag_note", {"title": "welcome"}))
        final["asked"] = asked

        resources = (await c.list_resources()).resources
        final["resources"] = sorted(str(r.uri) for r in resources)
        read = await c.read_resource("notes://index")
        final["resource_read"] = [getattr(x, "text", None) for x in read.contents]
        final["prompts"] = sorted(p.name for p in (await c.list_prompts()).prompts)
        got = await c.get_prompt("summarize", {"title": "welcome"})
        final["prompt"] = [m.content.text for m in got.messages]

        # last: forbidden through the proxy (bare, it wipes the notes)
        out["forbidden"] = shown_modern(await c.call_tool("wipe_notes", {}))
    out["final"] = final
    print(json.dumps(out))


def main():
    argv = sys.argv[1:]
    if "--" not in argv:
        raise SystemExit(__doc__)
    i = argv.index("--")
    head, cmd = argv[:i], argv[i + 1:]
    if head[0] == "fs":
        asyncio.run(fs(head[1], cmd))
    elif head[0] == "everything":
        asyncio.run(everything(cmd))
    elif head[0] == "remote":
        asyncio.run(remote(cmd))
    elif head[0] == "modern":
        asyncio.run(modern(cmd))
    elif head[0] == "latency":
        asyncio.run(latency(int(head[1]), cmd))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
