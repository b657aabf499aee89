// An MCP server for the conformance suite's server scenarios (@modelcontextprotocol/conformance),
// written with the official SDK (Streamable HTTP, sessions): the tools, resources and prompts the
// scenarios name, and nothing more. tests/mcp/conformance.mjs runs the suite against it directly and
// through edge-auth. Not an example to copy: examples/mcp/server.mjs is that.
//
//   node tests/mcp/conformance-server.mjs PORT      (loopback only)
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { completable } from '@modelcontextprotocol/sdk/server/completable.js';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  CreateMessageResultSchema, ElicitResultSchema, isInitializeRequest, SubscribeRequestSchema, UnsubscribeRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

const PORT = Number(process.argv[2]);
if (!Number.isInteger(PORT) || PORT <= 0) {
  console.error('usage: node tests/mcp/conformance-server.mjs PORT');
  process.exit(2);
}

// A 1x1 PNG, and a WAV of a few silent samples built here rather than pasted as base64.
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGOQz38NAAIqAXp4ksuCAAAAAElFTkSuQmCC';
function silentWav(samples = 8, rate = 8000) {
  const wav = Buffer.alloc(44 + samples, 0x80);
  wav.write('RIFF', 0);
  wav.writeUInt32LE(36 + samples, 4);
  wav.write('WAVEfmt ', 8);
  wav.writeUInt32LE(16, 16); // fmt chunk size
  wav.writeUInt16LE(1, 20); // PCM
  wav.writeUInt16LE(1, 22); // mono
  wav.writeUInt32LE(rate, 24);
  wav.writeUInt32LE(rate, 28); // bytes per second at 8 bits mono
  wav.writeUInt16LE(1, 32);
  wav.writeUInt16LE(8, 34);
  wav.write('data', 36);
  wav.writeUInt32LE(samples, 40);
  return wav.toString('base64');
}
const WAV = silentWav();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const text = (value) => ({ type: 'text', text: value });
const image = () => ({ type: 'image', data: PNG, mimeType: 'image/png' });

// Server-to-client messages go out with the request being served (extra.*), so they travel on that
// request's own SSE stream. Sent without it they would take the session's GET stream, which the client
// opens just as it sends its next POST: through a proxy that POST can win, and the message is lost.
function elicit(extra, message, properties, required) {
  const requestedSchema = { type: 'object', properties, required };
  return extra.sendRequest({ method: 'elicitation/create', params: { message, requestedSchema } }, ElicitResultSchema);
}
const elicited = ({ action, content }) => ({
  content: [text(`Elicitation completed: action=${action}, content=${JSON.stringify(content ?? {})}`)],
});
const embedded = (uri, mimeType, body) => ({ type: 'resource', resource: { uri, mimeType, text: body } });

function tools(server) {
  const tool = (name, description, inputSchema, handler) => server.registerTool(name, { description, inputSchema }, handler);
  tool('test_simple_text', 'Answers with one text item', undefined,
    async () => ({ content: [text('This is a simple text response for testing.')] }));
  tool('test_image_content', 'Answers with a PNG', undefined, async () => ({ content: [image()] }));
  tool('test_audio_content', 'Answers with a WAV', undefined,
    async () => ({ content: [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }] }));
  tool('test_embedded_resource', 'Answers with an embedded resource', undefined, async () => ({
    content: [embedded('test://embedded-resource', 'text/plain', 'This is an embedded resource content.')],
  }));
  tool('test_multiple_content_types', 'Answers with text, an image and a resource', undefined, async () => ({
    content: [
      text('Multiple content types test:'),
      image(),
      embedded('test://mixed-content-resource', 'application/json', '{"test":"data","value":123}'),
    ],
  }));
  tool('test_error_handling', 'Always fails, as a tool result (isError), not a protocol error', undefined,
    async () => ({ isError: true, content: [text('This tool intentionally returns an error for testing')] }));
  tool('test_tool_with_logging', 'Logs three messages while it runs', undefined, async (extra) => {
    for (const [i, data] of ['Tool execution started', 'Tool processing data', 'Tool execution completed'].entries()) {
      if (i > 0) await sleep(50);
      await extra.sendNotification({ method: 'notifications/message', params: { level: 'info', data } });
    }
    return { content: [text('Logged three messages')] };
  });
  tool('test_tool_with_progress', 'Reports progress 0, 50, 100 of 100', undefined, async (extra) => {
    const progressToken = extra._meta?.progressToken;
    for (const progress of [0, 50, 100]) {
      if (progress > 0) await sleep(50);
      if (progressToken !== undefined) {
        await extra.sendNotification({ method: 'notifications/progress', params: { progressToken, progress, total: 100 } });
      }
    }
    return { content: [text('Progress reported')] };
  });
  tool('test_sampling', 'Asks the client for an LLM completion of the prompt', { prompt: z.string() }, async ({ prompt }, extra) => {
    const result = await extra.sendRequest({
      method: 'sampling/createMessage',
      params: { messages: [{ role: 'user', content: text(prompt) }], maxTokens: 100 },
    }, CreateMessageResultSchema);
    return { content: [text(`LLM response: ${result.content.type === 'text' ? result.content.text : `[${result.content.type}]`}`)] };
  });
  tool('test_elicitation', 'Asks the user for a name and an email', { message: z.string() }, async ({ message }, extra) => elicited(
    await elicit(extra, message, {
      username: { type: 'string', description: "User's response" },
      email: { type: 'string', description: "User's email address" },
    }, ['username', 'email']),
  ));
  // SEP-1034: every primitive type with a default.
  tool('test_elicitation_sep1034_defaults', 'Elicits fields that all have defaults', undefined, async (extra) => elicited(
    await elicit(extra, 'Confirm or change these details', {
      name: { type: 'string', default: 'John Doe' },
      age: { type: 'integer', default: 30 },
      score: { type: 'number', default: 95.5 },
      status: { type: 'string', enum: ['active', 'inactive', 'pending'], default: 'active' },
      verified: { type: 'boolean', default: true },
    }, []),
  ));
  // SEP-1330: the five ways to write an enum.
  const choices = (prefix, titles) => titles.map((title, i) => ({ const: `${prefix}${i + 1}`, title }));
  tool('test_elicitation_sep1330_enums', 'Elicits each kind of enum', undefined, async (extra) => elicited(
    await elicit(extra, 'Pick some options', {
      untitledSingle: { type: 'string', enum: ['option1', 'option2', 'option3'] },
      titledSingle: { type: 'string', oneOf: choices('value', ['First Option', 'Second Option', 'Third Option']) },
      legacyEnum: { type: 'string', enum: ['opt1', 'opt2', 'opt3'], enumNames: ['Option One', 'Option Two', 'Option Three'] },
      untitledMulti: { type: 'array', items: { type: 'string', enum: ['option1', 'option2', 'option3'] } },
      titledMulti: { type: 'array', items: { anyOf: choices('value', ['First Choice', 'Second Choice', 'Third Choice']) } },
    }, []),
  ));
}

function resources(server) {
  server.registerResource('static-text', 'test://static-text', { description: 'A fixed text', mimeType: 'text/plain' },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'This is the content of the static text resource.' }] }));
  server.registerResource('static-binary', 'test://static-binary', { description: 'A fixed PNG', mimeType: 'image/png' },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'image/png', blob: PNG }] }));
  server.registerResource('watched', 'test://watched-resource', { description: 'A resource to subscribe to', mimeType: 'text/plain' },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'Watched.' }] }));
  server.registerResource('template-data', new ResourceTemplate('test://template/{id}/data', { list: undefined }),
    { description: 'Data for an id', mimeType: 'application/json' },
    async (uri, { id }) => ({
      contents: [{ uri: uri.href, mimeType: 'application/json', text: JSON.stringify({ id, templateTest: true, data: `Data for ${id}` }) }],
    }));
  // McpServer has no subscriptions: the low-level handlers keep a per-session set. Nothing here
  // ever changes, so no update is ever sent.
  const subscribed = new Set();
  server.server.setRequestHandler(SubscribeRequestSchema, async ({ params }) => (subscribed.add(params.uri), {}));
  server.server.setRequestHandler(UnsubscribeRequestSchema, async ({ params }) => (subscribed.delete(params.uri), {}));
}

function prompts(server) {
  const user = (content) => ({ role: 'user', content });
  server.registerPrompt('test_simple_prompt', { description: 'A prompt without arguments' },
    () => ({ messages: [user(text('This is a simple prompt for testing.'))] }));
  server.registerPrompt('test_prompt_with_arguments', {
    description: 'A prompt with two arguments (arg1 completes)',
    argsSchema: {
      arg1: completable(z.string().describe('First test argument'),
        (value) => ['paris', 'park', 'party', 'test'].filter((word) => word.startsWith(value ?? ''))),
      arg2: z.string().describe('Second test argument'),
    },
  }, ({ arg1, arg2 }) => ({ messages: [user(text(`Prompt with arguments: arg1='${arg1}', arg2='${arg2}'`))] }));
  server.registerPrompt('test_prompt_with_embedded_resource', {
    description: 'A prompt embedding the resource it is given',
    argsSchema: { resourceUri: z.string().describe('URI of the resource to embed') },
  }, ({ resourceUri }) => ({
    messages: [
      user(embedded(resourceUri, 'text/plain', 'Embedded resource content for testing.')),
      user(text('Please process the embedded resource above.')),
    ],
  }));
  server.registerPrompt('test_prompt_with_image', { description: 'A prompt with an image' },
    () => ({ messages: [user(image()), user(text('Please analyze the image above.'))] }));
}

function newServer() {
  // Capabilities McpServer does not declare on its own: logging (logging/setLevel) and subscriptions.
  const server = new McpServer({ name: 'edge-auth-conformance', version: '1.0.0' },
    { capabilities: { logging: {}, resources: { subscribe: true } } });
  tools(server);
  resources(server);
  prompts(server);
  return server;
}

// DNS rebinding: a page on another host name that resolves to 127.0.0.1 reaches this server with its
// own name in Host and Origin. Only loopback names get in. (Behind edge-auth, the edge refuses a
// foreign Origin before this.)
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);
function loopbackOnly(req) {
  const hostname = (value) => {
    try {
      return new URL(`http://${value}`).hostname;
    } catch {
      return '';
    }
  };
  if (!LOOPBACK.has(hostname(req.headers.host ?? ''))) return false;
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  try {
    return LOOPBACK.has(new URL(origin).hostname);
  } catch {
    return false;
  }
}

const sessions = new Map();
const MAX_SESSIONS = 200;

function refuse(res, status, message) {
  res.writeHead(status, { 'content-type': 'application/json' })
    .end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message }, id: null }));
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const body = Buffer.concat(chunks).toString('utf8');
  return body === '' ? undefined : JSON.parse(body);
}

const httpServer = http.createServer(async (req, res) => {
  try {
    if (new URL(req.url, 'http://localhost').pathname !== '/mcp') return refuse(res, 404, 'Not found');
    if (!loopbackOnly(req)) return refuse(res, 403, 'Host or Origin is not loopback');
    const body = req.method === 'POST' ? await readJson(req) : undefined;
    const sessionId = req.headers['mcp-session-id'];
    let transport = sessionId === undefined ? undefined : sessions.get(sessionId);
    if (transport === undefined) {
      if (sessionId !== undefined) return refuse(res, 404, 'Session not found');
      if (req.method !== 'POST' || !isInitializeRequest(body)) return refuse(res, 400, 'No session: initialize first');
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: randomUUID,
        onsessioninitialized: (id) => {
          // The suite never ends its sessions; keep the newest few hundred.
          if (sessions.size >= MAX_SESSIONS) sessions.get(sessions.keys().next().value)?.close();
          sessions.set(id, transport);
        },
      });
      transport.onclose = () => sessions.delete(transport.sessionId);
      await newServer().connect(transport);
    }
    await transport.handleRequest(req, res, body);
  } catch (error) {
    if (!res.headersSent) refuse(res, 400, String(error?.message ?? error));
    else res.end();
  }
});

httpServer.listen(PORT, '127.0.0.1', () => console.log(`conformance MCP server on http://127.0.0.1:${PORT}/mcp`));
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
