// An origin checking edge-auth's identity assertion, written with panva's `jose` and nothing of
// this repository (tests/e2e.rs runs it): the keys come from the worker's published JWKS, and the
// checks are the ones docs/assertion.md asks of an origin: the signature, `typ`, `iss`, `aud`,
// `exp`, then `htm` and `htu` against the request the origin received.
//
// stdin: a JSON array of cases { jwt, jwks, issuer, audience, htm, htu, now? } (`jwks`: the URL of
// the worker's JWKS; `now`: seconds since the epoch to verify at, else the clock).
// stdout: a JSON array, in order, of { ok: true, header, payload } or { ok: false, code, claim }.
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';

const input = JSON.parse(await new Promise((resolve, reject) => {
  let text = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => { text += chunk; });
  process.stdin.on('end', () => resolve(text));
  process.stdin.on('error', reject);
}));

// One key set per URL, as an origin keeps it (fetched once, again for a kid it does not know).
const keySets = new Map();
function keys(url) {
  if (!keySets.has(url)) keySets.set(url, createRemoteJWKSet(new URL(url)));
  return keySets.get(url);
}

async function verify(c) {
  const { payload } = await jwtVerify(c.jwt, keys(c.jwks), {
    issuer: c.issuer,
    audience: c.audience,
    algorithms: ['ES256', 'EdDSA'],
    typ: 'edge-auth+jwt',
    requiredClaims: ['iat', 'exp', 'htm', 'htu'],
    currentDate: c.now === undefined ? undefined : new Date(c.now * 1000),
  });
  // Bound to the request it came with: a method and URL (no query) the origin compares to its own.
  if (payload.htm !== c.htm) return { ok: false, code: 'htm_mismatch', claim: 'htm' };
  if (payload.htu !== c.htu) return { ok: false, code: 'htu_mismatch', claim: 'htu' };
  return { ok: true, header: decodeProtectedHeader(c.jwt), payload };
}

const results = [];
for (const c of input) {
  try {
    results.push(await verify(c));
  } catch (error) {
    results.push({ ok: false, code: error.code ?? String(error), claim: error.claim ?? null });
  }
}
process.stdout.write(JSON.stringify(results));
