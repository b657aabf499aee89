// The edge's own answers leave wasm as one string (`HttpResponse::to_wire` in src/http.rs): the
// status, each header's name and value, each on a line; then, when there is a body, a NUL and the
// body. An answer's status and headers repeat from request to request (the demo's routes, the
// refusals), so their parsed form is kept per isolate, keyed by that text: the runtime copies an
// init's headers into each new Response, so one Headers object serves them all.
const INITS = new Map();
// Headers carrying a request's own values (an echoed Origin) vary without end: the table is
// capped, the oldest entry going first.
const MAX_INITS = 64;

// A wire text's status opens it (three digits); a gateway plan opens with its target URL.
export function isWire(answer) {
  const first = answer.charCodeAt(0);
  return first >= 48 && first <= 57;
}

// A wire text as what a Response is made from: { body, init }.
export function prepare(wire) {
  const cut = wire.indexOf("\0");
  const head = cut < 0 ? wire : wire.slice(0, cut);
  let init = INITS.get(head);
  if (init === undefined) {
    const lines = head.split("\n");
    const headers = new Headers();
    for (let i = 1; i + 1 < lines.length; i += 2) headers.append(lines[i], lines[i + 1]);
    init = { status: Number(lines[0]), headers };
    if (INITS.size >= MAX_INITS) INITS.delete(INITS.keys().next().value);
    INITS.set(head, init);
  }
  return { body: cut < 0 ? null : wire.slice(cut + 1), init };
}

export function respond(wire) {
  const { body, init } = prepare(wire);
  return new Response(body, init);
}
