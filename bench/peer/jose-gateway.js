// The gateway a Workers user would write instead of edge-auth's: jose's remote JWKS (cached per
// isolate, refetched on an unknown kid) and jwtVerify on protected paths, a plain fetch on public
// ones, the subject passed on in a header. It checks far less than edge-auth's gateway (no path
// safety, no header sanitation, no origin timeout, no per-rule policy): the yardstick of issue #28,
// measured by bench/gateway.py. Bundled with esbuild as bench/peer/worker.js is.
// Bindings: ISSUER, JWKS_URL, AUTH0_AUDIENCE, ORIGIN_URL; ORIGIN_TIMEOUT_SECONDS (optional): the
// origin timeout such a user would add, AbortSignal.timeout on each fetch (bench/gateway.py
// --jose-timeout measures it beside the plain one; the comparison of record is without it).
import { createRemoteJWKSet, jwtVerify } from "jose";

const BEARER = /^Bearer[ \t]+([A-Za-z0-9\-._~+/]+=*)[ \t]*$/i;

let jwks; // one per isolate, made on the first protected request (env is not known before)

function refuse(status, code) {
  return new Response(JSON.stringify({ error: code }), {
    status,
    headers: { "content-type": "application/json", "www-authenticate": `Bearer error="${code}"` },
  });
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const target = env.ORIGIN_URL + url.pathname + url.search;
    const init = { method: request.method, headers: request.headers, body: request.body, redirect: "manual" };
    if (env.ORIGIN_TIMEOUT_SECONDS) init.signal = AbortSignal.timeout(Number(env.ORIGIN_TIMEOUT_SECONDS) * 1000);
    if (url.pathname.startsWith("/public/")) return fetch(target, init);
    const match = BEARER.exec(request.headers.get("authorization") ?? "");
    if (!match) return refuse(401, "invalid_request");
    jwks ??= createRemoteJWKSet(new URL(env.JWKS_URL));
    let payload;
    try {
      ({ payload } = await jwtVerify(match[1], jwks, {
        issuer: env.ISSUER,
        audience: env.AUTH0_AUDIENCE,
        algorithms: ["RS256"],
        clockTolerance: 30,
      }));
    } catch {
      return refuse(401, "invalid_token");
    }
    const headers = new Headers(request.headers);
    headers.set("x-auth-subject", payload.sub ?? "");
    return fetch(target, { ...init, headers });
  },
};
