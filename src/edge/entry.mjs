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
  // again: kept answers go too, so the next request rebuilds it (see KEPT).
  KEPT.clear();
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
  let text =
    request.method +
    "\n" +
    request.url +
    field(h.get("authorization")) +
    field(h.get("dpop")) +
    field(h.get("origin")) +
    field(h.get("access-control-request-method")) +
    field(h.get("upgrade")) +
    field(h.get("cf-connecting-ip"));
  if (gateway) {
    let names = "";
    for (const name of h.keys()) names = names === "" ? name : names + "," + name;
    text += "\n+" + names;
  }
  return text;
}

function field(value) {
  return value === null ? "\n-" : "\n+" + value;
}

// Answers the pipeline marked as kept for the request's head, by that head: a request with the
// same head is answered here, or sent on to the origin, without calling into wasm. Nobody counts
// or logs their success. Before the wire text or plan, `=` marks one fixed by the head (no token,
// clock, limit or state went into it: kept while this instance lives), `~made,until,installed`
// and a line break one that admitted a token (kept while the clock is before `until` and
// glue.installed() still says `installed`: no key set or deny list was replaced since). Heads hold
// the URL and header values without end of variety, so the table is capped (the oldest entry goes
// first) and a long head is not kept.
const KEPT = new Map();
const MAX_KEPT = 256;
const MAX_KEPT_HEAD = 4096;

// The pipeline's answer is a string: the edge's own response (`respond.mjs`), or in gateway mode
// a plan for the origin, which goes to forward.mjs; that calls back into the glue only for a
// failure (origin_failed) or a decision held for recording (origin_answered).
function send(request, known, answer, now, env, ctx, body) {
  if (answer === "") throw new Error("no answer");
  const mark = answer.charCodeAt(0);
  // "?limit": the answer depends on the body (an MCP rule's POST): read it, ask again with it.
  if (mark === 63) {
    const limit = Number(answer.slice(1));
    if (known.length <= MAX_KEPT_HEAD) {
      if (BODY_FIRST.size >= MAX_KEPT && !BODY_FIRST.has(known)) BODY_FIRST.delete(BODY_FIRST.keys().next().value);
      BODY_FIRST.set(known, limit);
    }
    return withBody(request, known, limit, now, env, ctx);
  }
  if (mark !== 61 && mark !== 126) {
    if (isWire(answer)) return respond(answer);
    gateway = true;
    return forward(request, parsePlan(answer), glue, undefined, body, env);
  }
  let entry;
  if (mark === 61) {
    entry = { value: open(answer.slice(1)), until: Infinity, installed: undefined, head: known, made: now };
  } else {
    const end = answer.indexOf("\n");
    const [made, until, installed, limit, body] = answer.slice(1, end).split(",").map(Number);
    // `limit`: a plan for an MCP rule, whose every body is checked (against what wasm keeps as
    // `body`) before the plan is used again.
    entry = { value: open(answer.slice(end + 1)), until, installed, head: known, made, limit, body };
  }
  if (known.length <= MAX_KEPT_HEAD) {
    if (KEPT.size >= MAX_KEPT && !KEPT.has(known)) KEPT.delete(KEPT.keys().next().value);
    KEPT.set(known, entry);
  }
  return again(request, entry, body);
}

// A plan kept for an MCP rule's head: this request's body is read and checked in wasm (the rule's
// scopes for its messages, against the kept token's); if it does not pass as the kept one did, the
// whole pipeline runs with it, and answers and records what it finds.
async function againWithBody(request, entry, known, now, env, ctx) {
  const read = await readBody(request, entry.limit);
  if (read === null) return respond(BODY_FAILED);
  if (glue.admits_body(entry.body, read.body, read.info)) return forward(request, entry.value, glue, entry, read.body);
  KEPT.delete(known);
  return answerWithBody(request, known, read, now, env, ctx);
}

// Heads whose answer needed the body before, with the body's limit: the same head's next request
// has its body read first and the pipeline runs once. Only a head the pipeline asked a body of is
// here, and it asks only once the head is admitted (origin, token, scopes), so a request that was
// never admitted does not make the edge read its body.
const BODY_FIRST = new Map();

// The body, at most `limit` + 1 bytes of it (the pipeline refuses a longer one with 413 without
// this isolate holding more), then the pipeline again with it. The bytes read are what the origin
// gets: the client's stream is spent.
async function withBody(request, known, limit, now, env, ctx) {
  const read = await readBody(request, limit);
  if (read === null) return respond(BODY_FAILED);
  return answerWithBody(request, known, read, now, env, ctx);
}

async function answerWithBody(request, known, read, now, env, ctx) {
  const answer = await settle(glue.fetch(request, env, ctx, known, now, read.body, read.info));
  if (answer.charCodeAt(0) === 63) throw new Error("body asked twice");
  // A refusal: the head is no longer one whose body is worth reading first.
  if (isWire(answer)) BODY_FIRST.delete(known);
  return send(request, known, answer, now, env, ctx, read.body);
}

// The body and what says how to read it (`info`: Content-Type, Content-Encoding, "1" when the
// declared length is over the limit, a line each); null when the client's body failed. Not an
// async function: a declared length, the common case, is one promise of the runtime's.
function readBody(request, limit) {
  const h = request.headers;
  const length = h.get("content-length");
  const declared = length === null ? NaN : Number(length);
  // Over the limit by its own word: the pipeline refuses it unread.
  const over = declared > limit;
  const info = (h.get("content-type") ?? "") + "\n" + (h.get("content-encoding") ?? "") + "\n" + (over ? "1" : "");
  if (over || !request.body) return Promise.resolve({ body: new Uint8Array(0), info });
  if (!Number.isSafeInteger(declared)) {
    return readAtMost(request, limit + 1).then((body) => (body === null ? null : { body, info }));
  }
  // A declared length the runtime holds the client to: read whole, in one step (a failure is
  // the client's body, handled in the same step).
  return request.bytes().then(
    (body) => ({ body, info }),
    () => null,
  );
}

const BODY_FAILED =
  '400\ncontent-type\napplication/json\ncache-control\nno-store\0{"error":"invalid_request","error_description":"The request body could not be read"}';

// A body of no declared length, read chunk by chunk up to `most` bytes.
async function readAtMost(request, most) {
  const reader = request.body.getReader();
  const chunks = [];
  let length = 0;
  try {
    while (length < most) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      length += value.byteLength;
    }
  } catch {
    return null;
  }
  if (length >= most) reader.cancel().catch(() => {});
  const bytes = new Uint8Array(Math.min(length, most));
  let at = 0;
  for (const chunk of chunks) {
    const part = chunk.subarray(0, bytes.length - at);
    bytes.set(part, at);
    at += part.byteLength;
    if (at >= bytes.length) break;
  }
  return bytes;
}

// The pipeline's answer once it is one: `[promise, id]` is a wait handed over by wasm (a signature
// check, see src/edge/handoff.rs), awaited here and resumed with how it settled; a promise is
// another wait, driven by wasm-bindgen-futures.
async function settle(answer) {
  while (Array.isArray(answer)) {
    const [promise, id] = answer;
    let ok = true;
    let value;
    try {
      value = await promise;
    } catch (error) {
      ok = false;
      value = error;
    }
    answer = glue.resume(id, ok, value);
  }
  return answer;
}

// A kept answer is prepared once, a kept plan read once.
function open(text) {
  return isWire(text) ? prepare(text) : parsePlan(text);
}

// A kept answer, or a kept plan: a failure hands back the head, the clock and the installs it was
// made with.
function again(request, entry, body) {
  const kept = entry.value;
  return kept.init === undefined ? forward(request, kept, glue, entry, body) : new Response(kept.body, kept.init);
}

// Whether a kept entry still holds: always for one fixed by the head; for a token's, until its
// time and while no key set or deny list was replaced.
function holds(entry, now) {
  return entry.until === Infinity || (now < entry.until && entry.installed === glue.installed());
}

export default {
  fetch(request, env, ctx) {
    try {
      const known = head(request);
      // The clock is read here: the runtime's Date.now() costs a crossing when wasm asks for it.
      const now = Date.now();
      const entry = KEPT.get(known);
      if (entry !== undefined) {
        if (holds(entry, now)) {
          if (entry.limit !== undefined) return againWithBody(request, entry, known, now, env, ctx).catch(failed);
          const sent = again(request, entry);
          return sent instanceof Promise ? sent.catch(failed) : sent;
        }
        KEPT.delete(known);
      }
      const limit = BODY_FIRST.get(known);
      if (limit !== undefined) return withBody(request, known, limit, now, env, ctx).catch(failed);
      const answer = glue.fetch(request, env, ctx, known, now, undefined, undefined);
      // Not a string when the answer waits: on a signature check, or other I/O (a key fetch, a
      // rate limit).
      if (typeof answer !== "string") return settle(answer).then((a) => send(request, known, a, now, env, ctx)).catch(failed);
      const sent = send(request, known, answer, now, env, ctx);
      return sent instanceof Promise ? sent.catch(failed) : sent;
    } catch (error) {
      return failed(error);
    }
  },
};
