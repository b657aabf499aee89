// Gateway mode's hot path in JavaScript: the pipeline (in wasm) decided what the origin gets and
// handed back a plan; this sends it and hands the answer back, as a plain pass-through would, so
// no forwarded request pays for a promise bridge into wasm. Only a failure calls back in
// (`origin_failed`), to answer with the edge's own error. Every decision is the core's: which headers go
// (`drop`, `add`), the target, the timeout, the relay's deadline, CORS ownership.
//
// plan: one string from wasm, NUL-separated: url, drop, add, timeoutMs, withBody, relayAt,
//   corsPrefix, corsAdd, origin, held, relayCheck; `forward` takes it as `parsePlan` reads it (a fixed plan is
//   read once, entry.mjs keeps it so).
//   drop     header names to remove, one a line          add      name and value on alternate lines
//   withBody "1": the client's body is sent              relayAt  "": not a relayed WebSocket handshake;
//                                                                  else its deadline in ms (-1: none)
//   corsPrefix  when set, origin headers starting with it are removed (the edge owns CORS)
//   corsAdd  the edge's CORS headers, as add;  origin   the request's Origin ("": none), for an error's CORS
//   held     "": nothing to record; else the id of the decision wasm holds until the origin answers
//   relayCheck  "": a relay no list judges; else JSON ({"every": ms, ...}) handed back to
//            relay_revoked(check, env) every `every` ms while the relay is open
// kept: for a plan kept for the request's head (entry.mjs), { head, made, installed }: a failure
//   hands them back, and the decision is made again from them (it was not held).
// edge: the wasm exports origin_failed(kind, origin, held, ms, head, made, installed) (the edge's
//   answer, see respond.mjs), origin_answered(held, status, ms) and relay_revoked(check, env).
// env: the worker's bindings, for relay_revoked.
import { respond } from "./respond.mjs";

// Read once per plan that is not kept (every distinct token's): empty fields, the usual case for
// most, are not split.
export function parsePlan(plan) {
  const [url, drop, add, ms, withBody, deadline, corsPrefix, corsAdd, origin, held, relayCheck] = plan.split("\0");
  return {
    url,
    drop: names(drop),
    add: pairs(add),
    ms: Number(ms),
    withBody: withBody !== "",
    relayAt: deadline === "" ? null : Number(deadline),
    corsPrefix,
    corsAdd: pairs(corsAdd),
    origin: origin || undefined,
    held: held === "" ? undefined : Number(held),
    relayCheck: relayCheck || undefined,
  };
}

const NONE = [];

// One name a line, each line ended.
function names(lines) {
  if (lines === "") return NONE;
  const out = lines.split("\n");
  out.pop();
  return out;
}

// Name and value on alternate lines, as [name, value] pairs.
function pairs(lines) {
  if (lines === "") return NONE;
  const parts = lines.split("\n");
  const out = [];
  for (let i = 0; i + 1 < parts.length; i += 2) out.push([parts[i], parts[i + 1]]);
  return out;
}

// body: the bytes entry.mjs read for the pipeline (an MCP rule's POST), sent as they are.
export function forward(request, plan, edge, kept, body, env) {
  const { url, held, relayAt, corsPrefix, corsAdd } = plan;
  const started = held === undefined && kept === undefined ? 0 : Date.now();
  const headers = new Headers(request.headers);
  for (const name of plan.drop) headers.delete(name);
  for (const [name, value] of plan.add) headers.append(name, value);
  const init = { method: request.method, headers, redirect: "manual" };
  let state = null;
  let controller = null;
  if (body !== undefined) {
    if (plan.withBody) init.body = body;
  } else if (plan.withBody && request.body) {
    // A body the client fails to send must abort the fetch (see watchedBody): only then is an
    // AbortController made, and the timeout aborts through it too.
    controller = new AbortController();
    init.signal = controller.signal;
    state = {};
    init.body = watchedBody(request.body, request.headers.get("content-length"), state, controller);
  }
  // The timeout covers the wait for the response headers only: the timer is cleared as soon as
  // they arrive (or the fetch fails), so a slow body streams on and no timer outlives its request.
  // A fetch that throws at once (a target the runtime refuses) is the origin unreachable, 502.
  // Without a body to abort, the fetch is given up rather than aborted: a request given up is
  // cancelled by the runtime when the answer (the 504) has been sent.
  let timer;
  const answered = new Promise((resolve, reject) => {
    timer = setTimeout(() => {
      const timeout = new DOMException("origin timeout", "TimeoutError");
      if (controller) controller.abort(timeout);
      reject(timeout);
    }, plan.ms);
    fetch(url, init).then(resolve, reject);
  });
  return answered.then(
    (response) => {
      // Cleared even where firing would do nothing: a timer left pending would live on, with its
      // closure, until it fired.
      clearTimeout(timer);
      if (state) state.answered = true;
      if (held !== undefined) edge.origin_answered(held, response.status, Date.now() - started);
      if (relayAt !== null && response.status === 101) return relay(response, relayAt, plan.relayCheck, edge, env);
      if (!corsPrefix && corsAdd.length === 0) return response;
      // The runtime's response headers are immutable: re-wrap the same body stream, passing the
      // response itself as the init (status, status text and every header, each Set-Cookie kept).
      const out = new Response(response.body, response);
      if (corsPrefix) {
        for (const name of [...out.headers.keys()]) if (name.startsWith(corsPrefix)) out.headers.delete(name);
      }
      // Set, except Vary, which is added to (the origin's own Vary still holds).
      for (const [name, value] of corsAdd) {
        if (name.toLowerCase() !== "vary") out.headers.set(name, value);
        else out.headers.append(name, value);
      }
      return out;
    },
    (error) => {
      clearTimeout(timer);
      const kind = error?.name === "TimeoutError" ? "timeout" : state?.clientFailed ? "client_body" : "unreachable";
      const ms = started === 0 ? 0 : Date.now() - started;
      return respond(edge.origin_failed(kind, plan.origin, held, ms, kept?.head, kept?.made ?? 0, kept?.installed));
    },
  );
}

// The client's body, read through a reader of our own so that a failure to read it (a bad chunk,
// a connection cut mid-upload) is told apart from the origin's: the fetch fails the same way for
// both. A failure aborts the fetch (workerd would otherwise end an errored body stream as if it
// were complete, and the origin would act on a truncated body) unless the origin has answered.
// A known length is kept (FixedLengthStream), so the origin still gets Content-Length.
function watchedBody(body, contentLength, state, controller) {
  const reader = body.getReader();
  const watched = new ReadableStream({
    async pull(stream) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (error) {
        state.clientFailed = true;
        if (!state.answered) controller.abort(error);
        stream.error(error);
        return;
      }
      if (chunk.done) stream.close();
      else stream.enqueue(chunk.value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  const length = contentLength === null ? NaN : Number(contentLength);
  if (!Number.isSafeInteger(length) || length < 0 || typeof FixedLengthStream !== "function") return watched;
  const fixed = new FixedLengthStream(length);
  watched.pipeTo(fixed.writable).catch(() => {});
  return fixed.readable;
}

// Relays frames between the socket the edge accepts from the client and the one the origin
// accepted, in JavaScript: no frame crosses into wasm. Both are closed with 1008 at closeAt (ms
// since the epoch; negative: never), and either side's close closes the other. An origin that
// did not accept the upgrade has its answer handed back as it is.
function relay(response, closeAt, check, wasm, env) {
  const upstream = response.webSocket;
  if (!upstream) return response;
  const [client, edge] = Object.values(new WebSocketPair());
  upstream.accept();
  edge.accept();
  let open = true;
  let timer;
  let judge;
  const close = (code, reason) => {
    if (!open) return;
    open = false;
    clearTimeout(timer);
    clearInterval(judge);
    for (const socket of [edge, upstream]) {
      try {
        socket.close(code, reason);
      } catch {}
    }
  };
  // 1005 (no code), 1006 (abnormal) and 1015 (TLS) are reported, never sent.
  const sendable = (code) =>
    code === 1000 || (code >= 1001 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
  const pass = (from, to) => {
    // A binary message may come as a Blob (wrangler dev's sockets), which send() would turn into
    // the text '[object Blob]': it is read first, and later messages wait their turn behind it.
    let queue = null;
    from.addEventListener("message", (event) => {
      const data = event.data;
      if (!queue && !(data instanceof Blob)) {
        try {
          to.send(data);
        } catch {
          close(1011, "relay failed");
        }
        return;
      }
      const turn = (queue || Promise.resolve())
        .then(async () => to.send(data instanceof Blob ? await data.arrayBuffer() : data))
        .catch(() => close(1011, "relay failed"));
      queue = turn;
      turn.then(() => {
        if (queue === turn) queue = null;
      });
    });
    from.addEventListener("close", (event) => close(sendable(event.code) ? event.code : 1000, event.reason || ""));
    from.addEventListener("error", () => close(1011, "relay failed"));
  };
  pass(edge, upstream);
  pass(upstream, edge);
  if (closeAt >= 0) {
    // setTimeout waits at most 2^31-1 ms (~24.8 days): a longer wait is re-armed.
    const arm = () => {
      const left = closeAt - Date.now();
      if (left <= 0) close(1008, "token expired");
      else timer = setTimeout(arm, Math.min(left, 2147483647));
    };
    arm();
  }
  // A token revoked while its socket is open: judged again every `every` ms (the deny list's
  // refresh interval, or a second for the fleet's), closed with 1008 once revoked.
  if (check !== undefined) {
    const every = JSON.parse(check).every;
    let asking = false;
    judge = setInterval(() => {
      if (asking || !open) return;
      asking = true;
      wasm
        .relay_revoked(check, env)
        .then((revoked) => {
          if (revoked) close(1008, "token revoked");
        })
        .catch(() => {})
        .finally(() => (asking = false));
    }, every);
  }
  const headers = new Headers();
  const protocol = response.headers.get("sec-websocket-protocol");
  if (protocol) headers.set("sec-websocket-protocol", protocol);
  return new Response(null, { status: 101, webSocket: client, headers });
}
