// The key store's and the deny list's runtime calls, each one plain JavaScript function that
// `io.rs` awaits: the Cache API, Workers KV and the issuer fetch. Every rule (what is stored
// where and for how long, what a fetch may return) is decided in Rust and passed in; these only
// make the calls. Written here rather than through the `worker` crate, whose types and glue
// doubled what a fresh isolate compiled for the same few calls.

// The cached JWKS document for `key` (an absolute URL), or null.
export async function cache_get(key) {
  const response = await caches.default.match(key);
  return response ? response.text() : null;
}

// Keeps `body` under `key` for `maxAge` seconds (the Cache API keeps only cacheable responses;
// on *.workers.dev it keeps nothing, which the key store tolerates).
export async function cache_put(key, body, maxAge) {
  const headers = { "content-type": "application/json", "cache-control": `public, max-age=${maxAge}` };
  await caches.default.put(key, new Response(body, { headers }));
}

export function kv_get(binding, key) {
  return binding.get(key);
}

export async function kv_put(binding, key, value, ttl) {
  await binding.put(key, value, { expirationTtl: ttl });
}

// Every page of a KV list (one list operation per 1,000 keys, no value read: the reason travels
// in each key's metadata), as JSON: [[name, reason or null], ...]. More than `maxPages` pages
// is an error.
export async function kv_list_all(binding, maxPages) {
  const entries = [];
  let cursor;
  for (let page = 0; page < maxPages; page++) {
    const result = await binding.list(cursor ? { cursor } : {});
    for (const key of result.keys) {
      const reason = key.metadata?.reason;
      entries.push([key.name, typeof reason === "string" ? reason : null]);
    }
    if (result.list_complete || !result.cursor) return JSON.stringify(entries);
    cursor = result.cursor;
  }
  throw new Error(`more than ${maxPages} pages`);
}

// The issuer's JWKS: the body's bytes on a 200, else a number: the status, or NETWORK, TIMEOUT,
// TOO_LARGE. No redirect is followed (keys come from the configured URL only); the timeout covers
// the body too, and the body is read chunk by chunk and given up past `cap` bytes, so a hostile or
// broken issuer can make the isolate hold no more than that.
const NETWORK = -1;
const TIMEOUT = -2;
const TOO_LARGE = -3;
export async function fetch_jwks(url, timeoutMs, cap) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const response = await fetch(url, {
      headers: { accept: "application/json" },
      redirect: "manual",
      signal: controller.signal,
    });
    if (response.status !== 200) {
      response.body?.cancel().catch(() => {});
      return response.status;
    }
    const declared = Number(response.headers.get("content-length") ?? NaN);
    if (declared > cap) {
      response.body?.cancel().catch(() => {});
      return TOO_LARGE;
    }
    const chunks = [];
    let length = 0;
    if (response.body) {
      const reader = response.body.getReader();
      // The abort is raced against each read too, so a body that stalls part way still times
      // out, whether or not the runtime passes the abort on to a pending read.
      const aborted = new Promise((_, reject) => {
        controller.signal.addEventListener("abort", () => reject(new Error("timeout")), { once: true });
      });
      aborted.catch(() => {});
      for (;;) {
        const { done, value } = await Promise.race([reader.read(), aborted]);
        if (done) break;
        if (!(value instanceof Uint8Array)) {
          reader.cancel().catch(() => {});
          return NETWORK;
        }
        length += value.byteLength;
        if (!(length <= cap)) {
          reader.cancel().catch(() => {});
          return TOO_LARGE;
        }
        chunks.push(value);
      }
    }
    const body = new Uint8Array(length);
    let at = 0;
    for (const chunk of chunks) {
      body.set(chunk, at);
      at += chunk.byteLength;
    }
    return body;
  } catch {
    return controller.signal.aborted ? TIMEOUT : NETWORK;
  } finally {
    clearTimeout(timer);
  }
}

// `ctx.waitUntil(promise)`: the work goes on after the answer.
export function wait_until(ctx, promise) {
  ctx.waitUntil(promise);
}

// The fleet's Durable Objects (fleet/, a Worker of its own bound by `script_name`): a proof key's
// memory of used `jti`s, and the revocations. Each answers JSON; a status the object does not
// give (or a throw) is for io.rs to refuse on. The host name is never resolved: a stub's fetch
// goes to the object.
export async function fleet_use(namespace, thumbprint, jti, until) {
  const stub = namespace.get(namespace.idFromName(thumbprint));
  const response = await stub.fetch("https://fleet/use", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jti, until }),
  });
  await response.body?.cancel();
  return response.status;
}

export async function fleet_list(namespace, name) {
  const stub = namespace.get(namespace.idFromName(name));
  const response = await stub.fetch("https://fleet/list");
  if (response.status !== 200) {
    await response.body?.cancel();
    throw new Error(`the revocations object answered ${response.status}`);
  }
  return response.text();
}

// A wait handed to entry.mjs (src/edge/handoff.rs): the promise and its id, as one value. An
// array literal here rather than js-sys's Array.of, the slower builtin, on every distinct token.
export function handed(promise, id) {
  return [promise, id];
}
