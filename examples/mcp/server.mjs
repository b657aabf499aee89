// An MCP server written with the official SDK (@modelcontextprotocol/sdk, Streamable HTTP), as a
// team would write one to put behind edge-auth: it checks no token itself. edge-auth in front makes
// it an OAuth protected resource (./scripts/dev.sh --mcp): it asks for a token issued for this
// server, reads which tool a call names, and asks for more scope where a tool needs it.
//
//   node examples/mcp/server.mjs [port]      (default 8791; loopback only)
//
// Tools: `echo` and `add` (any caller with the MCP scope), `delete_repo` (edge-auth's ROUTES ask for
// repo:admin on top), and `whoami`, which answers with the identity edge-auth forwarded (X-Auth-*).
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

const PORT = Number(process.argv[2] || process.env.MCP_PORT || 8791);
// Sessions: one transport (and server) per Mcp-Session-Id, made by the client's initialize.
const sessions = new Map();
const MAX_SESSIONS = 1000;

function newServer(identity) {
  const server = new McpServer({ name: 'edge-auth-example', version: '1.0.0' });
  const text = (value) => ({ content: [{ type: 'text', text: String(value) }] });
  server.registerTool('echo', { description: 'Says back what it is given', inputSchema: { message: z.string() } },
    async ({ message }) => text(message));
  server.registerTool('add', { description: 'Adds two numbers', inputSchema: { a: z.number(), b: z.number() } },
    async ({ a, b }) => text(a + b));
  server.registerTool('delete_repo',
    { description: 'Deletes a repository (pretends to; edge-auth asks for repo:admin)', inputSchema: { name: z.string() } },
    async ({ name }) => text(`deleted ${name}`));
  server.registerTool('whoami', { description: 'The caller, as edge-auth verified it' },
    // A tool without an input schema gets the request's context as its only argument.
    async (extra) => text(JSON.stringify(identity(extra))));
  return server;
}

// What edge-auth says about the caller of this request: its X-Auth-* headers (never the token).
function identityOf(extra) {
  const headers = extra?.requestInfo?.headers ?? {};
  return { subject: headers['x-auth-subject'] ?? null, scopes: headers['x-auth-scopes'] ?? null };
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return text === '' ? undefined : JSON.parse(text);
}

const httpServer = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://localhost');
    if (url.pathname.replace(/\/+$/, '').endsWith('/mcp') === false) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}');
      return;
    }
    const sessionId = req.headers['mcp-session-id'];
    const body = req.method === 'POST' ? await readJson(req) : undefined;
    let transport = sessionId ? sessions.get(sessionId) : undefined;
    if (!transport) {
      if (req.method !== 'POST' || !isInitializeRequest(body)) {
        res.writeHead(sessionId ? 404 : 400, { 'content-type': 'application/json' })
          .end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'No valid session' }, id: null }));
        return;
      }
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          if (sessions.size >= MAX_SESSIONS) sessions.delete(sessions.keys().next().value);
          sessions.set(id, transport);
        },
      });
      transport.onclose = () => transport.sessionId && sessions.delete(transport.sessionId);
      await newServer(identityOf).connect(transport);
    }
    await transport.handleRequest(req, res, body);
  } catch (error) {
    if (!res.headersSent) res.writeHead(400, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32700, message: String(error?.message ?? error) }, id: null }));
  }
});

httpServer.listen(PORT, '127.0.0.1', () => console.log(`example MCP server on http://127.0.0.1:${PORT}/mcp`));
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
