// The worker's entry: a plain handler object over wasm-bindgen's glue. worker-build's own entry
// constructs a Proxy-wrapped WorkerEntrypoint per request (~9 us of CPU each); this one calls the
// Rust handler directly. Panic recovery still holds: the glue is built with wasm-bindgen's
// abort handler and reset-state function, and re-creates the instance after a trap.
import * as glue from "./glue.js";
import { forward, parsePlan } from "./forward.mjs";
import { isWire, prepare, respond } from "./respond.mjs";

const FAILURE = '{"error":"server_error","error_description":"Internal error"}';

// The last resort, for a trap or exception that escaped the Rust handler: the usual JSON error
// shape, never the runtime's error page or a stack trace, and one log line.
function failed(error) {
  // A trap re-creates the wasm instance, whose isolate state (configuration included) starts
  // again: kept answers go too, so the next request rebuilds it (see FIXED).
  FIXED.clear();
  console.error(JSON.stringify({ component: "edge-auth", event: "internal_error", kind: error?.name ?? "unknown" }));
  return new Response(FAILURE, {
    status: 500,
    headers: { "content-type": "application/json", "cache-control": "no-store" },
  });
}

// What the pipeline reads of a request, as one string (one crossing into wasm rather than one
// per header): a line per field, "+value" when present, "-" when absent. Header values and URLs
// hold no line breaks. The order is `Parts::parse`'s in src/edge/mod.rs. A gateway decides per
// header name what the origin gets: once this isolate has seen that it is one, every name comes
// too (comma-separated; a name holds no comma), rather than in a call of their own.
let gateway = false;

function head(request) {
  const h = request.headers;
  const field = (value) => (value === null ? "-" : "+" + value);
  const fields = [
    request.method,
    request.url,
    field(h.get("authorization")),
    field(h.get("dpop")),
    field(h.get("origin")),
    field(h.get("access-control-request-method")),
    field(h.get("upgrade")),
    field(h.get("cf-connecting-ip")),
  ];
  if (gateway) fields.push("+" + [...h.keys()].join(","));
  return fields.join("\n");
}

// Answers the pipeline marked as fixed by the request's head (`=` before the wire text or plan: no
// token, clock, limit or state went into it, and nobody counts or logs its success), by that
// head: a request with the same head is answered here, or sent on to the origin, without calling
// into wasm. Heads hold the URL and header values without end of variety, so the table is capped
// (the oldest entry goes first) and a long head is not kept.
const FIXED = new Map();
const MAX_FIXED = 256;
const MAX_FIXED_HEAD = 2048;

// The pipeline's answer is a string: the edge's own response (`respond.mjs`), or in gateway mode
// a plan for the origin, which goes to forward.mjs; that calls back into the glue only for a
// failure (origin_failed) or a decision held for recording (origin_answered).
function send(request, known, answer) {
  if (answer === "") throw new Error("no answer");
  if (answer.charCodeAt(0) !== 61) {
    if (isWire(answer)) return respond(answer);
    gateway = true;
    return forward(request, parsePlan(answer), glue);
  }
  const text = answer.slice(1);
  const fixed = isWire(text) ? prepare(text) : parsePlan(text);
  if (known.length <= MAX_FIXED_HEAD) {
    if (FIXED.size >= MAX_FIXED) FIXED.delete(FIXED.keys().next().value);
    FIXED.set(known, fixed);
  }
  return again(request, known, fixed);
}

// A fixed answer (prepared), or a fixed plan (read): a failure hands back the head it was fixed by.
function again(request, known, fixed) {
  return fixed.init === undefined ? forward(request, fixed, glue, known) : new Response(fixed.body, fixed.init);
}

export default {
  fetch(request, env, ctx) {
    try {
      const known = head(request);
      const fixed = FIXED.get(known);
      if (fixed !== undefined) {
        const sent = again(request, known, fixed);
        return sent instanceof Promise ? sent.catch(failed) : sent;
      }
      // The clock is read here: the runtime's Date.now() costs a crossing when wasm asks for it.
      const answer = glue.fetch(request, env, ctx, known, Date.now());
      // A promise when the answer had to wait for I/O (a key fetch, a rate limit).
      if (answer instanceof Promise) return answer.then((a) => send(request, known, a)).catch(failed);
      const sent = send(request, known, answer);
      return sent instanceof Promise ? sent.catch(failed) : sent;
    } catch (error) {
      return failed(error);
    }
  },
};
