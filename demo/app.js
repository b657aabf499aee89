// The demo page: the unmodified Auth0 SPA SDK, pointed at the dev issuer, calling the worker from
// another origin. What each call shows is what the browser let this page read.
import { createAuth0Client } from '@auth0/auth0-spa-js';

// Filled in at bundle time by scripts/dev.sh (esbuild --define), so the ports can differ in tests.
const config = __EDGE_AUTH_DEMO__;
const ROUTES = ['/api/public', '/api/private', '/api/private-scoped'];
const $ = (id) => document.getElementById(id);
const useDpop = localStorage.getItem('edge-auth-demo.dpop') === '1';

function decode(jwt) {
  try {
    return JSON.parse(atob(jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
  } catch {
    return {};
  }
}

function row(route, status, kind, body, challenge) {
  const tr = document.createElement('tr');
  tr.dataset.route = route;
  tr.innerHTML = '<td><code></code></td><td class="status"></td><td><pre class="body"></pre></td><td><code class="challenge"></code></td>';
  tr.cells[0].firstChild.textContent = route;
  tr.cells[1].textContent = status;
  tr.cells[1].classList.add(kind);
  tr.querySelector('.body').textContent = body;
  tr.querySelector('.challenge').textContent = challenge;
  return tr;
}

async function call(client, signedIn) {
  document.body.dataset.state = 'calling';
  // Our own token getter: the SDK's default one asks for `audience: undefined`, which misses the cached
  // token for the default audience.
  const getAccessToken = () => client.getTokenSilently({ detailedResponse: true });
  const fetcher = signedIn ? client.createFetcher({ getAccessToken, ...(useDpop && { dpopNonceId: 'edge-auth' }) }) : null;
  const rows = [];
  for (const route of ROUTES) {
    const url = config.api + route;
    try {
      const response = signedIn ? await fetcher.fetchWithAuth(url) : await fetch(url);
      const kind = response.ok ? 'ok' : 'denied';
      rows.push(row(route, String(response.status), kind, await response.text(), response.headers.get('WWW-Authenticate') || ''));
    } catch (error) {
      // A response the browser refuses to hand over (no CORS permission) surfaces as a TypeError.
      const kind = error instanceof TypeError ? 'blocked' : 'error';
      rows.push(row(route, kind, kind, `${error.name}: ${error.message}`, ''));
    }
  }
  $('results').replaceChildren(...rows);
  document.body.dataset.state = 'called';
}

async function main() {
  $('where').textContent = `this page: ${location.origin} · worker: ${config.api} · dev issuer: ${config.issuer}`;
  $('dpop').checked = useDpop;
  $('dpop').onchange = () => localStorage.setItem('edge-auth-demo.dpop', $('dpop').checked ? '1' : '0');
  const client = await createAuth0Client({
    domain: config.issuer,
    clientId: config.clientId,
    authorizationParams: {
      redirect_uri: config.page,
      audience: config.audience,
      scope: 'openid profile email read:messages',
    },
    useRefreshTokens: true,
    cacheLocation: 'localstorage',
    useDpop,
  });
  const query = new URLSearchParams(location.search);
  if (query.has('error')) {
    $('error').textContent = `login failed: ${query.get('error')}: ${query.get('error_description') || ''}`;
    history.replaceState(null, '', location.pathname);
  } else if (query.has('code') && query.has('state')) {
    await client.handleRedirectCallback();
    history.replaceState(null, '', location.pathname);
  }
  const signedIn = await client.isAuthenticated();
  if (signedIn) {
    const user = await client.getUser();
    const token = await client.getTokenSilently({ detailedResponse: true });
    const claims = decode(token.access_token);
    $('who').textContent = `Signed in as ${user.name} (${user.sub})`;
    $('token').textContent = `token_type ${token.token_type} · scope "${claims.scope}" · permissions ${JSON.stringify(claims.permissions)}` +
      (claims.cnf ? ` · bound to key ${claims.cnf.jkt}` : '');
  } else {
    $('who').textContent = 'Signed out';
    $('token').textContent = 'Without a token: /api/public answers, the others say why not.';
  }
  $('login').disabled = signedIn;
  $('logout').disabled = !signedIn;
  $('call').disabled = false;
  $('login').onclick = () => client.loginWithRedirect();
  $('logout').onclick = () => client.logout({ logoutParams: { returnTo: config.page } });
  $('call').onclick = () => call(client, signedIn).catch(show);
  document.body.dataset.state = signedIn ? 'signed-in' : 'signed-out';
}

function show(error) {
  $('error').textContent = `${error.error || error.name}: ${error.error_description || error.message}`;
  document.body.dataset.state = 'error';
}

main().catch(show);
