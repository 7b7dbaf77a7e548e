#!/usr/bin/env node
// A Streamable HTTP MCP server with the fixtures the MCP conformance suite's
// server scenarios call (test_simple_text, test_sampling, test://static-text,
// test_simple_prompt, …), written from the scenarios' own descriptions
// (`conformance list` / the package's scenario texts), on the official
// TypeScript SDK that the conformance package installs. The suite ships no
// such server on npm, and server-everything implements other fixtures, so
// this one lets `tests/mcp.rs` compare every scenario bare and through
// `signoff mcp --listen` — including the server's own requests (sampling,
// elicitation), logging and progress on a gated call's event stream.
//
// Like server-everything it does no DNS-rebinding check: the proxy in
// front of it does. Listens on 127.0.0.1:$PORT/mcp.
//
// For the proxy's own tests: with RECORD=FILE, every request it receives
// is appended to FILE as one JSON line (method, Content-Type, the raw body
// as text), so a test can prove what reached the server and what never
// did; and two tools outside the list misbehave on purpose:
// test_drop_connection (the connection closes without an answer) and
// test_http_500 (HTTP 500).
//
//   PORT=3001 node scripts/mcp-conformance-server.mjs   (from target/mcp-deps
//   or with NODE_PATH=target/mcp-deps/node_modules)
import fs from "node:fs";
import http from "node:http";
import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

// resolve the SDK from the deps directory, wherever this script lives
const deps = process.env.MCP_DEPS ?? process.cwd();
const require = createRequire(`${deps}/package.json`);
const load = async (p) => import(pathToFileURL(require.resolve(p)).href);
const { Server } = await load("@modelcontextprotocol/sdk/server/index.js");
const { StreamableHTTPServerTransport } = await load(
  "@modelcontextprotocol/sdk/server/streamableHttp.js",
);
const t = await load("@modelcontextprotocol/sdk/types.js");

// a 1x1 PNG and a tiny WAV, base64
const PNG =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
const WAV = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA=";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const text = (s) => ({ content: [{ type: "text", text: s }] });
const none = { type: "object", properties: {} };

const TOOLS = [
  { name: "test_simple_text", description: "Returns simple text", inputSchema: none },
  { name: "test_image_content", description: "Returns an image", inputSchema: none },
  { name: "test_audio_content", description: "Returns audio", inputSchema: none },
  { name: "test_embedded_resource", description: "Returns an embedded resource", inputSchema: none },
  { name: "test_multiple_content_types", description: "Returns text, image and resource", inputSchema: none },
  { name: "test_tool_with_logging", description: "Logs while it runs", inputSchema: none },
  { name: "test_tool_with_progress", description: "Reports progress", inputSchema: none },
  { name: "test_error_handling", description: "Always fails", inputSchema: none },
  { name: "test_reconnection", description: "Closes its event stream mid-call (SEP-1699)", inputSchema: none },
  {
    name: "test_sampling",
    description: "Asks the client's LLM",
    inputSchema: { type: "object", properties: { prompt: { type: "string" } }, required: ["prompt"] },
  },
  {
    name: "test_elicitation",
    description: "Asks the user",
    inputSchema: { type: "object", properties: { message: { type: "string" } }, required: ["message"] },
  },
  { name: "test_elicitation_sep1034_defaults", description: "Elicitation with defaults", inputSchema: none },
  { name: "test_elicitation_sep1330_enums", description: "Elicitation with enums", inputSchema: none },
  {
    name: "json_schema_2020_12_tool",
    description: "Tool with JSON Schema 2020-12 features",
    inputSchema: {
      $schema: "https://json-schema.org/draft/2020-12/schema",
      type: "object",
      $defs: {
        address: { type: "object", properties: { street: { type: "string" }, city: { type: "string" } } },
      },
      properties: { name: { type: "string" }, address: { $ref: "#/$defs/address" } },
      additionalProperties: false,
    },
  },
];

const RESOURCES = {
  "test://static-text": { mimeType: "text/plain", text: "This is the content of the static text resource." },
  "test://static-binary": { mimeType: "image/png", blob: PNG },
  "test://watched-resource": { mimeType: "text/plain", text: "Watched resource content." },
};

function newServer() {
  const server = new Server(
    { name: "signoff-conformance-fixture", version: "1.0.0" },
    {
      capabilities: {
        tools: {},
        resources: { subscribe: true },
        prompts: {},
        logging: {},
        completions: {},
      },
    },
  );
  server.setRequestHandler(t.ListToolsRequestSchema, async () => ({ tools: TOOLS }));
  server.setRequestHandler(t.CallToolRequestSchema, async (req, extra) => {
    const args = req.params.arguments ?? {};
    const log = (data) =>
      extra.sendNotification({ method: "notifications/message", params: { level: "info", data } });
    const elicit = (params) => extra.sendRequest({ method: "elicitation/create", params }, t.ElicitResultSchema);
    switch (req.params.name) {
      case "test_simple_text":
        return text("This is a simple text response for testing.");
      case "test_image_content":
        return { content: [{ type: "image", data: PNG, mimeType: "image/png" }] };
      case "test_audio_content":
        return { content: [{ type: "audio", data: WAV, mimeType: "audio/wav" }] };
      case "test_embedded_resource":
        return {
          content: [
            {
              type: "resource",
              resource: {
                uri: "test://embedded-resource",
                mimeType: "text/plain",
                text: "This is an embedded resource content.",
              },
            },
          ],
        };
      case "test_multiple_content_types":
        return {
          content: [
            { type: "text", text: "Multiple content types test:" },
            { type: "image", data: PNG, mimeType: "image/png" },
            {
              type: "resource",
              resource: {
                uri: "test://mixed-content-resource",
                mimeType: "application/json",
                text: JSON.stringify({ test: "data", value: 123 }),
              },
            },
          ],
        };
      case "test_tool_with_logging":
        await log("Tool execution started");
        await sleep(50);
        await log("Tool processing data");
        await sleep(50);
        await log("Tool execution completed");
        return text("Tool with logging executed successfully");
      case "test_tool_with_progress": {
        const token = req.params._meta?.progressToken;
        for (const [i, progress] of [0, 50, 100].entries()) {
          if (i > 0) await sleep(50);
          if (token !== undefined) {
            await extra.sendNotification({
              method: "notifications/progress",
              params: { progressToken: token, progress, total: 100 },
            });
          }
        }
        return text("Tool with progress executed successfully");
      }
      case "test_reconnection":
        // the client resumes with GET and Last-Event-ID; the result is replayed there
        await sleep(50);
        extra.closeSSEStream?.();
        await sleep(200);
        return text("Reconnection test completed successfully");
      case "test_error_handling":
        return { isError: true, content: [{ type: "text", text: "This tool intentionally returns an error for testing" }] };
      case "test_sampling": {
        const r = await extra.sendRequest(
          {
            method: "sampling/createMessage",
            params: {
              messages: [{ role: "user", content: { type: "text", text: args.prompt } }],
              maxTokens: 100,
            },
          },
          t.CreateMessageResultSchema,
        );
        return text(`LLM response: ${r.content?.text ?? JSON.stringify(r.content)}`);
      }
      case "test_elicitation": {
        const r = await elicit({
          message: args.message,
          requestedSchema: {
            type: "object",
            properties: {
              username: { type: "string", description: "User's response" },
              email: { type: "string", description: "User's email address" },
            },
            required: ["username", "email"],
          },
        });
        return text(`User response: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`);
      }
      case "test_elicitation_sep1034_defaults": {
        const r = await elicit({
          message: "Please review these values",
          requestedSchema: {
            type: "object",
            properties: {
              name: { type: "string", default: "John Doe" },
              age: { type: "integer", default: 30 },
              score: { type: "number", default: 95.5 },
              status: { type: "string", enum: ["active", "inactive", "pending"], default: "active" },
              verified: { type: "boolean", default: true },
            },
          },
        });
        return text(`Elicitation completed: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`);
      }
      case "test_elicitation_sep1330_enums": {
        const r = await elicit({
          message: "Please pick options",
          requestedSchema: {
            type: "object",
            properties: {
              untitledSingle: { type: "string", enum: ["option1", "option2", "option3"] },
              titledSingle: {
                type: "string",
                oneOf: [
                  { const: "value1", title: "First Option" },
                  { const: "value2", title: "Second Option" },
                  { const: "value3", title: "Third Option" },
                ],
              },
              legacyEnum: {
                type: "string",
                enum: ["opt1", "opt2", "opt3"],
                enumNames: ["Option One", "Option Two", "Option Three"],
              },
              untitledMulti: { type: "array", items: { type: "string", enum: ["option1", "option2", "option3"] } },
              titledMulti: {
                type: "array",
                items: {
                  anyOf: [
                    { const: "value1", title: "First Choice" },
                    { const: "value2", title: "Second Choice" },
                    { const: "value3", title: "Third Choice" },
                  ],
                },
              },
            },
          },
        });
        return text(`Elicitation completed: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`);
      }
      case "json_schema_2020_12_tool":
        return text(`Received: ${JSON.stringify(args)}`);
      default:
        throw new t.McpError(t.ErrorCode.InvalidParams, `Unknown tool: ${req.params.name}`);
    }
  });
  server.setRequestHandler(t.ListResourcesRequestSchema, async () => ({
    resources: Object.entries(RESOURCES).map(([uri, r]) => ({ uri, name: uri, mimeType: r.mimeType })),
  }));
  server.setRequestHandler(t.ListResourceTemplatesRequestSchema, async () => ({
    resourceTemplates: [{ uriTemplate: "test://template/{id}/data", name: "data", mimeType: "application/json" }],
  }));
  server.setRequestHandler(t.ReadResourceRequestSchema, async (req) => {
    const uri = req.params.uri;
    const m = /^test:\/\/template\/([^/]+)\/data$/.exec(uri);
    if (m) {
      const body = { id: m[1], templateTest: true, data: `Data for ID: ${m[1]}` };
      return { contents: [{ uri, mimeType: "application/json", text: JSON.stringify(body) }] };
    }
    const r = RESOURCES[uri];
    if (!r) throw new t.McpError(t.ErrorCode.InvalidParams, `Resource ${uri} not found`);
    return { contents: [{ uri, ...r }] };
  });
  server.setRequestHandler(t.SubscribeRequestSchema, async () => ({}));
  server.setRequestHandler(t.UnsubscribeRequestSchema, async () => ({}));
  server.setRequestHandler(t.ListPromptsRequestSchema, async () => ({
    prompts: [
      { name: "test_simple_prompt", description: "A simple prompt" },
      {
        name: "test_prompt_with_arguments",
        description: "A prompt with two arguments",
        arguments: [
          { name: "arg1", description: "First test argument", required: true },
          { name: "arg2", description: "Second test argument", required: true },
        ],
      },
      {
        name: "test_prompt_with_embedded_resource",
        description: "A prompt with an embedded resource",
        arguments: [{ name: "resourceUri", description: "URI of the resource to embed", required: true }],
      },
      { name: "test_prompt_with_image", description: "A prompt with an image" },
    ],
  }));
  server.setRequestHandler(t.GetPromptRequestSchema, async (req) => {
    const a = req.params.arguments ?? {};
    const user = (content) => ({ role: "user", content });
    switch (req.params.name) {
      case "test_simple_prompt":
        return { messages: [user({ type: "text", text: "This is a simple prompt for testing." })] };
      case "test_prompt_with_arguments":
        return {
          messages: [user({ type: "text", text: `Prompt with arguments: arg1='${a.arg1}', arg2='${a.arg2}'` })],
        };
      case "test_prompt_with_embedded_resource":
        return {
          messages: [
            user({
              type: "resource",
              resource: { uri: a.resourceUri, mimeType: "text/plain", text: "Embedded resource content for testing." },
            }),
            user({ type: "text", text: "Please process the embedded resource above." }),
          ],
        };
      case "test_prompt_with_image":
        return {
          messages: [
            user({ type: "image", data: PNG, mimeType: "image/png" }),
            user({ type: "text", text: "Please analyze the image above." }),
          ],
        };
      default:
        throw new t.McpError(t.ErrorCode.InvalidParams, `Prompt ${req.params.name} not found`);
    }
  });
  server.setRequestHandler(t.CompleteRequestSchema, async () => ({
    completion: { values: ["paris", "park", "party"], total: 3, hasMore: false },
  }));
  server.setRequestHandler(t.SetLevelRequestSchema, async () => ({}));
  return server;
}

const sessions = new Map();

// events kept for resumption (Last-Event-ID), in order
class Events {
  constructor() {
    this.log = [];
  }
  async storeEvent(streamId, message) {
    const id = `${streamId}_${this.log.length}_${randomUUID()}`;
    this.log.push({ id, streamId, message });
    return id;
  }
  async getStreamIdForEventId(id) {
    return this.log.find((e) => e.id === id)?.streamId;
  }
  async replayEventsAfter(lastId, { send }) {
    const at = this.log.findIndex((e) => e.id === lastId);
    if (at < 0) return "";
    const { streamId } = this.log[at];
    for (const e of this.log.slice(at + 1)) {
      if (e.streamId === streamId) await send(e.id, e.message);
    }
    return streamId;
  }
}

async function handle(req, res) {
  if (new URL(req.url, "http://x").pathname !== "/mcp") {
    res.writeHead(404).end();
    return;
  }
  let body;
  if (req.method === "POST") {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    if (process.env.RECORD) {
      const seen = {
        method: req.method,
        contentType: req.headers["content-type"] ?? null,
        body: Buffer.concat(chunks).toString("latin1"),
      };
      fs.appendFileSync(process.env.RECORD, JSON.stringify(seen) + "\n");
    }
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      res.writeHead(400, { "content-type": "application/json" });
      res.end(JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32700, message: "Parse error" } }));
      return;
    }
  }
  if (body?.method === "tools/call" && body.params?.name === "test_drop_connection") {
    req.socket.destroy();
    return;
  }
  if (body?.method === "tools/call" && body.params?.name === "test_http_500") {
    res.writeHead(500, { "content-type": "text/plain" }).end("failed mid-call");
    return;
  }
  const sid = req.headers["mcp-session-id"];
  let transport = sid ? sessions.get(sid) : undefined;
  if (!transport) {
    if (sid || req.method !== "POST" || !t.isInitializeRequest(body)) {
      res.writeHead(sid ? 404 : 400, { "content-type": "application/json" });
      res.end(JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32000, message: "No valid session" } }));
      return;
    }
    transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      eventStore: new Events(),
      retryInterval: 500,
      onsessioninitialized: (id) => sessions.set(id, transport),
    });
    transport.onclose = () => transport.sessionId && sessions.delete(transport.sessionId);
    await newServer().connect(transport);
  }
  await transport.handleRequest(req, res, body);
}

const port = Number(process.env.PORT ?? 3001);
http
  .createServer((req, res) =>
    handle(req, res).catch((e) => {
      if (!res.headersSent) res.writeHead(500).end(String(e));
    }),
  )
  .listen(port, "127.0.0.1", () => console.error(`conformance fixture listening on ${port}`));
