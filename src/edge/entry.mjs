// The worker's entry: a plain handler object over wasm-bindgen's glue. worker-build's own entry
// constructs a Proxy-wrapped WorkerEntrypoint per request (~9 us of CPU each); this one calls the
// Rust handler directly. Panic recovery still holds: the glue is built with wasm-bindgen's
// abort handler and reset-state function, and re-creates the instance after a trap.
import * as glue from "./glue.js";
import { forward } from "./forward.mjs";

const FAILURE = '{"error":"server_error","error_description":"Internal error"}';

// The last resort, for a trap or exception that escaped the Rust handler: the usual JSON error
// shape, never the runtime's error page or a stack trace, and one log line.
function failed(error) {
  console.error(JSON.stringify({ component: "edge-auth", event: "internal_error", kind: error?.name ?? "unknown" }));
  return new Response(FAILURE, {
    status: 500,
    headers: { "content-type": "application/json", "cache-control": "no-store" },
  });
}

// What the pipeline reads of a request, as one string (one crossing into wasm rather than one
// per header): a line per field, "+value" when present, "-" when absent. Header values and URLs
// hold no line breaks. The order is `Head::parse`'s in src/edge/mod.rs.
function head(request) {
  const h = request.headers;
  const field = (value) => (value === null ? "-" : "+" + value);
  return [
    request.method,
    request.url,
    field(h.get("authorization")),
    field(h.get("dpop")),
    field(h.get("origin")),
    field(h.get("access-control-request-method")),
    field(h.get("upgrade")),
    field(h.get("cf-connecting-ip")),
  ].join("\n");
}

// A plan (a string) goes to forward.mjs, which calls back into the glue only for a failure
// (origin_failed) or a decision held for recording (origin_answered).
function send(request, answer) {
  return typeof answer === "string" ? forward(request, answer, glue) : answer;
}

export default {
  fetch(request, env, ctx) {
    try {
      const answer = glue.fetch(request, env, ctx, head(request));
      // A Response, a plan for the origin (gateway mode), or a promise of either.
      if (answer instanceof Promise) return answer.then((a) => send(request, a)).catch(failed);
      return typeof answer === "string" ? send(request, answer).catch(failed) : answer;
    } catch (error) {
      return failed(error);
    }
  },
};
