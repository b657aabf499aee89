// The JavaScript worker a Workers user would write instead of edge-auth: the same three routes,
// bodies and RFC 6750 errors, with jose's remote JWKS (cached per isolate, refetched on an
// unknown kid) and jwtVerify. The benchmark's yardstick; bundled by bench/bench.py with esbuild.
// Bindings: ISSUER, JWKS_URL, AUTH0_AUDIENCE.
import { createRemoteJWKSet, jwtVerify } from "jose";

const PUBLIC = "Hello from a public endpoint! You don't need to be authenticated to see this.";
const PRIVATE = "Hello from a private endpoint! You need to be authenticated to see this.";
const SCOPED =
  "Hello from a private endpoint! You need to be authenticated and have a scope of read:messages to see this.";
const BEARER = /^Bearer[ \t]+([A-Za-z0-9\-._~+/]+=*)[ \t]*$/i;

let jwks; // one per isolate, made on the first protected request (env is not known before)

const json = (status, body, headers = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });

function error(status, code, description, env) {
  const realm = `Bearer realm="${env.AUTH0_AUDIENCE}"`;
  const challenge = status === 401 && code === "missing_authorization" ? realm
    : `${realm}, error="${code}", error_description="${description}"` + (status === 403 ? ', scope="read:messages"' : "");
  return json(status, { error: code, error_description: description },
    { "cache-control": "no-store", "www-authenticate": challenge });
}

export default {
  async fetch(request, env) {
    const { pathname } = new URL(request.url);
    if (pathname === "/api/public") return json(200, { message: PUBLIC });
    if (pathname !== "/api/private" && pathname !== "/api/private-scoped") {
      return json(404, { error: "not_found", error_description: "No such route" }, { "cache-control": "no-store" });
    }
    const header = request.headers.get("authorization");
    if (!header || !/^bearer(\s|$)/i.test(header.trim())) {
      return error(401, "missing_authorization", "Authorization header with a Bearer token is expected", env);
    }
    const match = BEARER.exec(header.trim());
    if (!match) return error(400, "invalid_request", "The Authorization header must hold one Bearer token", env);
    jwks ??= createRemoteJWKSet(new URL(env.JWKS_URL));
    let payload;
    try {
      ({ payload } = await jwtVerify(match[1], jwks, {
        issuer: env.ISSUER, audience: env.AUTH0_AUDIENCE, algorithms: ["RS256"], clockTolerance: 30,
      }));
    } catch {
      return error(401, "invalid_token", "The access token is invalid", env);
    }
    if (pathname === "/api/private-scoped") {
      const scopes = new Set(typeof payload.scope === "string" ? payload.scope.split(" ") : []);
      if (Array.isArray(payload.permissions)) payload.permissions.forEach((p) => scopes.add(p));
      if (!scopes.has("read:messages")) {
        return error(403, "insufficient_scope", "The token does not grant the required scope", env);
      }
      return json(200, { message: SCOPED }, { "cache-control": "no-store" });
    }
    return json(200, { message: PRIVATE }, { "cache-control": "no-store" });
  },
};
