// MCP clients written with the official SDK against an MCP server behind edge-auth, the whole way:
// ./scripts/dev.sh --mcp (the dev issuer, the example server, the worker in wrangler dev, on ports
// of their own), then examples/mcp/client.mjs's user and machine clients. Checks each step of the
// MCP authorization spec as the SDK lives it:
//   401 → RFC 9728 metadata → RFC 7591 registration → PKCE login with resource (RFC 8707) → token
//   → tools/list → a tool needing more scope: 403 → the SDK steps up → the call succeeds;
//   and client_credentials (ClientCredentialsProvider) for an agent with no user.
//
//   node tests/mcp/sdk.mjs            (scripts/test.sh runs it after the browser test)
import { connectAsMachine, connectAsUser, textOf } from '../../examples/mcp/client.mjs';
import { freePorts, startDev } from '../js/devsh.mjs';


let failures = 0;
function check(name, ok, detail = '') {
  console.log(`${ok ? 'ok' : 'FAILED'} - ${name}${ok ? '' : `: ${detail}`}`);
  if (!ok) failures += 1;
}

// dev.sh --mcp: resolves with the MCP URL once dev.sh prints it.
function startMcp(ports) {
  const [worker, issuer, mcp, inspector] = ports.map(String);
  return startDev('--mcp', { WORKER_PORT: worker, ISSUER_PORT: issuer, MCP_PORT: mcp, INSPECTOR_PORT: inspector }, 'mcp');
}

async function run(url, issuerPort) {
  // What an unauthenticated client meets first.
  const first = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
  });
  const challenge = first.headers.get('www-authenticate') ?? '';
  const metadataUrl = new URL('/.well-known/oauth-protected-resource/mcp', url).href;
  check('401 names the resource metadata and the scope', first.status === 401
    && challenge.includes(`resource_metadata="${metadataUrl}"`) && challenge.includes('scope="mcp:tools"'), challenge);
  const metadata = await (await fetch(metadataUrl)).json();
  const issuer = `http://127.0.0.1:${issuerPort}/`;
  check('the metadata names the resource and the dev issuer', metadata.resource === url
    && metadata.authorization_servers?.[0] === issuer, JSON.stringify(metadata));

  // A user: discovery, registration, PKCE with resource, then a step-up for delete_repo.
  const user = await connectAsUser(url, 'dev-user|3');
  const firstLogin = user.login.logins[0];
  check('the client registered itself', typeof user.login.clientInformation()?.client_id === 'string');
  check('the login used PKCE S256 and named the server as the resource',
    firstLogin?.searchParams.get('code_challenge_method') === 'S256' && firstLogin?.searchParams.get('resource') === url,
    firstLogin?.search);
  check('the first token holds the scope the 401 asked for', user.login.tokens()?.scope === 'mcp:tools', user.login.tokens()?.scope);
  const tools = (await user.client.listTools()).tools.map((t) => t.name).sort().join(',');
  check('tools/list is answered through the edge', tools === 'add,delete_repo,echo,whoami', tools);
  check('a plain tool call works', textOf(await user.call('add', { a: 2, b: 3 })) === '5');
  const deleted = textOf(await user.call('delete_repo', { name: 'demo' }));
  check('a tool needing more scope: 403, the SDK steps up, the call succeeds',
    deleted === 'deleted demo' && user.login.logins.length === 2, `${deleted}, ${user.login.logins.length} logins`);
  check('the stepped-up token holds both scopes', user.login.tokens()?.scope?.split(' ').sort().join(' ') === 'mcp:tools repo:admin',
    user.login.tokens()?.scope);
  const me = JSON.parse(textOf(await user.call('whoami')));
  check('the server sees the verified subject, not the token', me.subject === 'dev-user|3', JSON.stringify(me));
  await user.client.close();

  // A user the authorization server grants nothing: never reaches a tool.
  let refused = null;
  try {
    const nobody = await connectAsUser(url, 'dev-user|2');
    await nobody.client.listTools();
  } catch (error) {
    refused = error;
  }
  check('a user without the scope never gets through', refused !== null, 'connected');

  // An agent with no user: client_credentials.
  const agent = await connectAsMachine(url, issuer, 'mcp:tools repo:admin');
  const who = JSON.parse(textOf(await agent.call('whoami')));
  check('an M2M client connects with client_credentials', who.subject === 'edge-auth-dev-m2m@clients', JSON.stringify(who));
  check('and calls a tool needing repo:admin', textOf(await agent.call('delete_repo', { name: 'x' })) === 'deleted x');
  await agent.client.close();
}

const ports = await freePorts(4);
const dev = startMcp(ports);
try {
  const url = await dev.ready;
  await run(url, ports[1]);
} catch (error) {
  check('the MCP flow ran to the end', false, String(error?.stack ?? error));
  console.error(dev.log().slice(-4000));
} finally {
  await dev.stop();
}
if (failures > 0) {
  console.log(`MCP SDK test: ${failures} check(s) failed`);
  process.exit(1);
}
console.log('MCP SDK test passed');
