#!/usr/bin/env python3
"""A small MCP server written with the official Python SDK, for the MCP
gate's end-to-end tests of protocol revision 2026-07-28 (it speaks every
version the SDK does; the tests drive it with a 2026-07-28 client).

  mcp_modern_server.py                 over stdio
  mcp_modern_server.py --http PORT     Streamable HTTP on 127.0.0.1:PORT/mcp

Notes live in memory, starting with one ("welcome"). Tools:
  read_note(title)        reads a note
  write_note(title, body) writes a note
  delete_note(title)      asks the user why (2026-07-28: an
                          InputRequiredResult, answered on a continuation
                          call with inputResponses/requestState), deletes
  tag_note(title)         asks the user for a tag the same way, tags
  wipe_notes()            deletes every note
A resource (notes://index: the titles) and a prompt (summarize).
"""
import sys
from typing import Annotated

from pydantic import BaseModel

from mcp.server.mcpserver import Elicit, MCPServer, Resolve

app = MCPServer("modern-notes", version="1.0")
NOTES = {"welcome": "hello from the notes server"}
TAGS = {}


class Reason(BaseModel):
    reason: str


class Tag(BaseModel):
    tag: str


def ask_reason(title: str):
    return Elicit(f"Why delete the note {title!r}?", Reason)


def ask_tag(title: str):
    return Elicit(f"Which tag for the note {title!r}?", Tag)


@app.tool(description="Reads a note")
def read_note(title: str) -> str:
    return NOTES.get(title, f"no note {title!r}")


@app.tool(description="Writes a note, replacing one with the same title")
def write_note(title: str, body: str) -> str:
    NOTES[title] = body
    return f"wrote {title!r} ({len(body)} chars)"


@app.tool(description="Deletes a note after asking the user why")
def delete_note(title: str, why: Annotated[Reason, Resolve(ask_reason)]) -> str:
    existed = NOTES.pop(title, None) is not None
    return f"deleted {title!r} (existed: {existed}) because {why.reason!r}"


@app.tool(description="Tags a note with a tag the user chooses")
def tag_note(title: str, chosen: Annotated[Tag, Resolve(ask_tag)]) -> str:
    TAGS.setdefault(title, []).append(chosen.tag)
    return f"tagged {title!r} with {chosen.tag!r}"


@app.tool(description="Deletes every note")
def wipe_notes() -> str:
    n = len(NOTES)
    NOTES.clear()
    return f"wiped {n} notes"


@app.resource("notes://index", description="The titles of all notes")
def index() -> str:
    return "\n".join(sorted(NOTES))


@app.prompt(description="Asks for a summary of a note")
def summarize(title: str) -> str:
    return f"Summarize the note {title!r}: {NOTES.get(title, '')}"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--http"]:
        app.run("streamable-http", port=int(sys.argv[2]))
    else:
        app.run()
