// An MCP client written with the official SDK (@modelcontextprotocol/sdk), the way an agent or IDE
// talks to an MCP server behind edge-auth: it finds the authorization server from the server's 401
// (RFC 9728), registers itself (RFC 7591), logs in with PKCE naming the server as the resource
// (RFC 8707), and steps up when a tool needs more scope (403 insufficient_scope).
//
//   node examples/mcp/client.mjs URL [--user dev-user|3] [--tool NAME --args JSON]
//   node examples/mcp/client.mjs URL --m2m [--tool NAME --args JSON]
//
// URL is the MCP endpoint (./scripts/dev.sh --mcp prints it). The login is headless: the dev
// issuer signs `--user` in without a page when the authorization request names it (login_hint),
// and the client reads the code from the redirect instead of running a browser. --m2m logs in as
// the dev issuer's machine-to-machine client (client_credentials) instead.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

// The dev issuer's machine-to-machine client (devissuer/src/oauth.rs).
export const M2M_CLIENT = { id: 'edge-auth-dev-m2m', secret: 'edge-auth-dev-m2m-secret' };

// An OAuthClientProvider that keeps everything in memory and "visits" the authorization URL with
// fetch: the dev issuer answers a login_hint with a redirect carrying the code.
export class HeadlessLogin {
  constructor(user, redirectUrl = 'http://127.0.0.1:8999/callback') {
    this.user = user;
    this.redirect = redirectUrl;
    this.code = undefined;
    this.logins = [];
  }
  get redirectUrl() {
    return this.redirect;
  }
  get clientMetadata() {
    return {
      client_name: 'edge-auth example MCP client',
      redirect_uris: [this.redirect],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  clientInformation() {
    return this.client;
  }
  saveClientInformation(info) {
    this.client = info;
  }
  tokens() {
    return this.saved;
  }
  saveTokens(tokens) {
    this.saved = tokens;
  }
  saveCodeVerifier(verifier) {
    this.verifier = verifier;
  }
  codeVerifier() {
    return this.verifier;
  }
  async redirectToAuthorization(url) {
    url.searchParams.set('login_hint', this.user);
    this.logins.push(new URL(url));
    const answer = await fetch(url, { redirect: 'manual' });
    const location = answer.headers.get('location');
    const redirected = location && new URL(location, url);
    this.code = redirected?.searchParams.get('code') ?? undefined;
    if (!this.code) {
      throw new Error(`the authorization server gave no code (${answer.status} ${redirected?.search ?? (await answer.text())})`);
    }
  }
}

// Runs `step` with the client; when the SDK needs a login (first contact, or a step-up), finishes
// it with the code the headless login caught and runs `step` again.
async function withLogin(transport, login, step) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await step();
    } catch (error) {
      if (!(error instanceof UnauthorizedError) || !login?.code || attempt > 2) throw error;
      const code = login.code;
      login.code = undefined;
      await transport.finishAuth(code);
    }
  }
}

// Connects as a user: 401 → discovery → registration → PKCE login → token; a fresh transport after
// the first login (the SDK's transport starts once).
export async function connectAsUser(url, user) {
  const login = new HeadlessLogin(user);
  let transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: login });
  const client = new Client({ name: 'edge-auth-example-client', version: '1.0.0' });
  try {
    await client.connect(transport);
  } catch (error) {
    if (!(error instanceof UnauthorizedError) || !login.code) throw error;
    const code = login.code;
    login.code = undefined;
    await transport.finishAuth(code);
    transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: login });
    await client.connect(transport);
  }
  const call = (name, args = {}) => withLogin(transport, login, () => client.callTool({ name, arguments: args }));
  return { client, login, transport, call };
}

// Connects as the machine-to-machine client (client_credentials): no user, no redirect.
export async function connectAsMachine(url, issuer, scope) {
  const provider = new ClientCredentialsProvider({
    clientId: M2M_CLIENT.id,
    clientSecret: M2M_CLIENT.secret,
    expectedIssuer: issuer,
    scope,
  });
  const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  const client = new Client({ name: 'edge-auth-example-agent', version: '1.0.0' });
  await client.connect(transport);
  return { client, provider, call: (name, args = {}) => client.callTool({ name, arguments: args }) };
}

export function textOf(result) {
  return (result?.content ?? []).map((part) => part.text ?? '').join('');
}

async function main(argv) {
  const url = argv[0];
  if (!url || url.startsWith('--')) {
    console.error('usage: node examples/mcp/client.mjs URL [--user dev-user|3 | --m2m] [--tool NAME --args JSON]');
    process.exit(2);
  }
  const flag = (name) => {
    const i = argv.indexOf(name);
    return i > 0 ? argv[i + 1] : undefined;
  };
  const tool = flag('--tool') ?? 'whoami';
  const args = JSON.parse(flag('--args') ?? '{}');
  let session;
  if (argv.includes('--m2m')) {
    const metadata = await (await fetch(new URL('/.well-known/oauth-protected-resource' + new URL(url).pathname, url))).json();
    session = await connectAsMachine(url, metadata.authorization_servers[0], flag('--scope') ?? 'mcp:tools repo:admin');
    console.log('logged in as the machine-to-machine client', M2M_CLIENT.id);
  } else {
    session = await connectAsUser(url, flag('--user') ?? 'dev-user|3');
    const scopes = session.login.tokens()?.scope;
    console.log(`logged in as ${session.login.user} (client ${session.login.clientInformation()?.client_id}), scopes: ${scopes}`);
  }
  const tools = await session.client.listTools();
  console.log('tools:', tools.tools.map((t) => t.name).join(', '));
  const result = await session.call(tool, args);
  console.log(`${tool}:`, textOf(result));
  if (session.login) console.log(`scopes now: ${session.login.tokens()?.scope} (${session.login.logins.length} login(s))`);
  await session.client.close();
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).catch((error) => {
    console.error(String(error?.stack ?? error));
    process.exit(1);
  });
}
