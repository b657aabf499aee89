// End-to-end test of edge-auth-fleet in `wrangler dev` (workerd, local SQLite-backed Durable
// Objects), through the admin API:
//
//   node fleet/test.mjs            builds fleet (fleet/build.sh), then tests it
//   FLEET_PREBUILT=1 node ...      uses fleet/build/ as it is
//
// It starts the fleet's wrangler three times on one --persist-to folder: the contract, then a
// restart (what was recorded must still be there; with it running, a throwaway worker in a
// temporary folder, started as a second `wrangler dev`, binds the classes with script_name as
// edge-auth will and must reach the same objects), then once without FLEET_ADMIN_TOKEN. Each
// wrangler runs in its own process group and is stopped as one (wrangler runs workerd as a child).
// Exits non-zero on any failure; the last line is "N passed, N failed".

import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { isDeepStrictEqual } from "node:util";

const FLEET = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(FLEET);
const TOKEN = `test-${process.pid}-${Date.now()}`;
const STATE = mkdtempSync(join(tmpdir(), "fleet-test-"));
const now = () => Math.floor(Date.now() / 1000);

let passed = 0;
let failed = 0;
/** The worker `call` talks to. */
let target = null;
const running = new Set();
const WRANGLER = join(ROOT, "node_modules/.bin/wrangler");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function check(what, ok, detail = "") {
  if (ok) {
    passed++;
    console.log(`ok - ${what}`);
  } else {
    failed++;
    console.log(`not ok - ${what}${detail ? `\n    ${detail}` : ""}`);
  }
}

/** One request; the answer as { status, body (parsed JSON, or the text) }. */
async function call(method, path, { body, token = TOKEN, raw } = {}) {
  const headers = {};
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const init = { method, headers };
  if (body !== undefined) init.body = raw ? body : JSON.stringify(body);
  const response = await fetch(`http://127.0.0.1:${target.port}${path}`, init);
  const text = await response.text();
  let parsed = text;
  try {
    parsed = JSON.parse(text);
  } catch {}
  return { status: response.status, body: parsed };
}

/** Checks an answer's status and JSON body (deep-equal, or a predicate on the body). */
async function expect(what, method, path, options, status, wanted) {
  const answer = await call(method, path, options);
  const bodyOk = typeof wanted === "function" ? wanted(answer.body) : isDeepStrictEqual(answer.body, wanted);
  check(what, answer.status === status && bodyOk, `got ${answer.status} ${JSON.stringify(answer.body)}`);
  return answer.body;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts `wrangler dev` in its own process group (setsid), so that stopping it stops its workerd
 * too. Ready once `ready(port)` holds. `fleet` runs fleet/wrangler.toml from the repository root
 * with npx, as a developer would; otherwise `config` names another worker's folder.
 */
async function startWrangler({ token = TOKEN, dir = ROOT, config = "fleet/wrangler.toml", ready = fleetAnswers } = {}) {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const args = ["dev", "-c", config, "--ip", "127.0.0.1", "--port", String(port)];
    args.push("--inspector-port", String(await freePort()), "--show-interactive-dev-session=false");
    args.push("--persist-to", join(STATE, dir === ROOT ? "fleet" : "other"));
    if (token !== null) args.push("--var", `FLEET_ADMIN_TOKEN:${token}`);
    // npx resolves wrangler from the working folder's node_modules, which a temporary folder lacks.
    const [command, commandArgs] = dir === ROOT ? ["npx", ["wrangler", ...args]] : [WRANGLER, args];
    const child = spawn(command, commandArgs, {
      cwd: dir,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        ...process.env,
        PATH: `${join(ROOT, "node_modules/.bin")}:${process.env.PATH}`,
        FLEET_PREBUILT: "1",
        CI: "true",
        WRANGLER_SEND_METRICS: "false",
        // This run's own dev registry: its fleet is the one the probe worker binds, whatever
        // other `wrangler dev` sessions this user has open.
        WRANGLER_REGISTRY_PATH: join(STATE, "registry"),
      },
    });
    const started = { child, port, log: "", exited: false, failedBefore: failed };
    child.stdout.on("data", (d) => (started.log += d));
    child.stderr.on("data", (d) => (started.log += d));
    started.done = new Promise((resolve) => child.on("exit", () => resolve((started.exited = true))));
    running.add(started);
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline && !started.exited) {
      try {
        if (await ready(port)) return started;
      } catch {}
      await sleep(250);
    }
    await stopWrangler(started);
    if (started.log.includes("Address already in use") && attempt < 3) continue;
    throw new Error(`wrangler dev did not start:\n${started.log}`);
  }
}

/** Any answer from the fleet worker itself: 401 without a token, 503 without a configured one. */
async function fleetAnswers(port) {
  const answer = await fetch(`http://127.0.0.1:${port}/list`);
  return answer.status === 401 || answer.status === 503;
}

async function stopWrangler(started) {
  const { child } = started;
  if (!started.exited && child.pid > 1) {
    try {
      process.kill(-child.pid, "SIGTERM"); // the group spawn created, and only it
    } catch {}
    const timeout = setTimeout(() => {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {}
    }, 10_000);
    await started.done;
    clearTimeout(timeout);
  }
  // A check failed while this wrangler ran: its log (the worker's console) may say why.
  if (failed > started.failedBefore) console.log(`# wrangler log:\n${started.log.replace(/^/gm, "#   ")}`);
  running.delete(started);
}

/**
 * Whether a shard's storage still holds an index key for `jti`: read from the SQLite file
 * miniflare keeps per object (v3/do/<script>-<class>/<id>.sqlite, table _cf_KV). Null when that
 * layout is not there (another miniflare), and the check is skipped.
 */
async function indexKeysFor(jti) {
  const dir = join(STATE, "fleet/v3/do/edge-auth-fleet-ReplayShard");
  if (!existsSync(dir)) return null;
  let sqlite;
  try {
    // Node 22 marks node:sqlite experimental and says so on stderr; the warning is noise here.
    const emitWarning = process.emitWarning;
    process.emitWarning = (warning, ...rest) => (/SQLite/.test(String(warning)) ? undefined : emitWarning.call(process, warning, ...rest));
    sqlite = await import("node:sqlite");
  } catch {
    return null;
  }
  let found = 0;
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".sqlite") && f !== "metadata.sqlite")) {
    const db = new sqlite.DatabaseSync(join(dir, file), { readOnly: true });
    try {
      const rows = db.prepare("SELECT key FROM _cf_KV WHERE key LIKE 'x:%'").all();
      found += rows.filter((row) => String(row.key).endsWith(`:${jti}`)).length;
    } finally {
      db.close();
    }
  }
  return found;
}

async function contract() {
  const until = now() + 600;
  const use = (jkt, body, options = {}) => ["POST", `/use?jkt=${jkt}`, { body, ...options }];

  // Replay shards.
  await expect("first use of a jti: 200 used:false", ...use("keyA", { jti: "j1", until }), 200, { used: false });
  await expect("second use of that jti: 409 used:true", ...use("keyA", { jti: "j1", until }), 409, { used: true });
  await expect("a different jti on that key: 200", ...use("keyA", { jti: "j2", until }), 200, { used: false });
  await expect("the same jti on another key: 200", ...use("keyB", { jti: "j1", until }), 200, { used: false });
  const isError = (body) => typeof body?.error === "string" && body.error.length > 0;
  for (const [what, body] of [
    ["not JSON", "{not json"],
    ["until a float", JSON.stringify({ jti: "bad1", until: until + 0.5 })],
    ["until a string", JSON.stringify({ jti: "bad1", until: String(until) })],
    ["until missing", JSON.stringify({ jti: "bad1" })],
    ["jti over 256 bytes", JSON.stringify({ jti: "b".repeat(257), until })],
    ["jti empty", JSON.stringify({ jti: "", until })],
    ["unknown field", JSON.stringify({ jti: "bad1", until, extra: 1 })],
  ]) {
    await expect(`bad body (${what}): 400 with an error`, ...use("keyA", body, { raw: true }), 400, isError);
  }
  await expect("after the bad bodies nothing was stored: bad1 is a first use", ...use("keyA", { jti: "bad1", until }), 200, { used: false });
  await expect("a jti of exactly 256 bytes: 200", ...use("keyA", { jti: "c".repeat(256), until }), 200, { used: false });
  await expect("/use without jkt: 400", "POST", "/use", { body: { jti: "x", until } }, 400, isError);
  await expect("GET /use: 405", "GET", "/use?jkt=keyA", {}, 405, isError);

  // Admin authentication and routing.
  await expect("no token: 401", "GET", "/list", { token: null }, 401, { error: "unauthorized" });
  await expect("wrong token: 401", "GET", "/list", { token: `${TOKEN}x` }, 401, { error: "unauthorized" });
  await expect("replay route without a token: 401", ...use("keyA", { jti: "j9", until }, { token: null }), 401, isError);
  await expect("unknown path: 404", "GET", "/nope", {}, 404, isError);

  // Revocations.
  const start = await expect("list: 200 with a version", "GET", "/list", {}, 200, (b) => Number.isInteger(b.version) && Array.isArray(b.entries));
  const v0 = start.version;
  const shortUntil = now() + 2;
  await expect("revoke a sub: version + 1", "POST", "/revoke", { body: { kind: "sub", value: "auth0|u1", until: null, reason: "left" } }, 200, { version: v0 + 1 });
  await expect("revoke a jti for 2 s: version + 2", "POST", "/revoke", { body: { kind: "jti", value: "t1", until: shortUntil } }, 200, { version: v0 + 2 });
  await expect("the same revocation again: no change", "POST", "/revoke", { body: { kind: "sub", value: "auth0|u1", until: null, reason: "left" } }, 200, { version: v0 + 2 });
  await expect("list shows both", "GET", "/list", {}, 200, {
    version: v0 + 2,
    entries: [
      { kind: "sub", value: "auth0|u1", until: null, reason: "left" },
      { kind: "jti", value: "t1", until: shortUntil, reason: null },
    ],
  });
  await expect("unrevoke the sub: version + 3", "POST", "/unrevoke", { body: { kind: "sub", value: "auth0|u1" } }, 200, { version: v0 + 3 });
  await expect("unrevoke it again: no change", "POST", "/unrevoke", { body: { kind: "sub", value: "auth0|u1" } }, 200, { version: v0 + 3 });
  await expect("revoke with until in the past: 400", "POST", "/revoke", { body: { kind: "sub", value: "x", until: now() - 10 } }, 400, isError);
  await expect("revoke with an unknown kind: 400", "POST", "/revoke", { body: { kind: "user", value: "x", until: null } }, 400, isError);
  await expect("revoke without until: 400", "POST", "/revoke", { body: { kind: "sub", value: "x" } }, 400, isError);
  await expect("revoke with a 201-byte reason: 400", "POST", "/revoke", { body: { kind: "sub", value: "x", until: null, reason: "r".repeat(201) } }, 400, isError);
  await expect("failed revokes moved no version", "GET", "/list", {}, 200, (b) => b.version === v0 + 3);

  // Expiry: a replay record and a revocation that lapse within seconds.
  const soon = now() + 1;
  await expect("short-lived jti: first use 200", ...use("keyC", { jti: "short", until: soon }), 200, { used: false });
  await expect("short-lived jti: replay 409 while live", ...use("keyC", { jti: "short", until: soon }), 409, { used: true });
  const indexed = await indexKeysFor("short");
  if (indexed !== null) check("the record is in the expiry index", indexed === 1, `${indexed} index keys`);
  await sleep(Math.max(soon, shortUntil) * 1000 + 1500 - Date.now());
  const pruned = await indexKeysFor("short");
  if (pruned === null) console.log("# skipped: alarm pruning check (no miniflare SQLite files found)");
  else check("the alarm removed the expired record's index key", pruned === 0, `${pruned} left`);
  await expect("short-lived jti after its until: 200 again", ...use("keyC", { jti: "short", until: now() + 600 }), 200, { used: false });
  await expect("expired revocation left out of the list, version unchanged", "GET", "/list", {}, 200, { version: v0 + 3, entries: [] });
  await expect("revoke a client for the restart: version + 4", "POST", "/revoke", { body: { kind: "client", value: "c-keep", until: null, reason: "kept" } }, 200, { version: v0 + 4 });
  return v0 + 4;
}

async function afterRestart(version) {
  await expect("after restart: the used jti is still 409", "POST", "/use?jkt=keyA", { body: { jti: "j1", until: now() + 600 } }, 409, { used: true });
  await expect("after restart: the revocation is still listed", "GET", "/list", {}, 200, {
    version,
    entries: [{ kind: "client", value: "c-keep", until: null, reason: "kept" }],
  });
}

// A throwaway worker binding the fleet's classes as edge-auth will (script_name), written to a
// temporary folder: run as its own `wrangler dev` beside the fleet's, it reaches the fleet's
// objects through wrangler's dev registry.
const PROBE_TOML = `name = "fleet-test-probe"
main = "probe.mjs"
compatibility_date = "2026-11-01"

[[durable_objects.bindings]]
name = "FLEET_REPLAY"
class_name = "ReplayShard"
script_name = "edge-auth-fleet"

[[durable_objects.bindings]]
name = "FLEET_REVOCATIONS"
class_name = "Revocations"
script_name = "edge-auth-fleet"
`;
const PROBE_JS = `export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/ready") return new Response("ready");
    if (url.pathname === "/use") {
      const ns = env.FLEET_REPLAY;
      const stub = ns.get(ns.idFromName(url.searchParams.get("jkt")));
      return stub.fetch("https://fleet/use", { method: "POST", body: await request.text() });
    }
    if (url.pathname === "/list") {
      const ns = env.FLEET_REVOCATIONS;
      return ns.get(ns.idFromName("revocations")).fetch("https://fleet/list");
    }
    return new Response("not found", { status: 404 });
  },
};
`;

async function fromAnotherProcess(version) {
  const dir = mkdtempSync(join(tmpdir(), "fleet-probe-"));
  try {
    writeFileSync(join(dir, "wrangler.toml"), PROBE_TOML);
    writeFileSync(join(dir, "probe.mjs"), PROBE_JS);
    const probe = await startWrangler({
      dir,
      config: "wrangler.toml",
      token: null,
      ready: async (port) => (await fetch(`http://127.0.0.1:${port}/ready`)).ok,
    });
    const fleet = target;
    target = probe;
    const until = now() + 600;
    await expect("another wrangler dev, through its own binding: the used jti is 409", "POST", "/use?jkt=keyA", { body: { jti: "j1", until }, token: null }, 409, { used: true });
    await expect("another wrangler dev: a new jti is 200", "POST", "/use?jkt=keyA", { body: { jti: "probe-1", until }, token: null }, 200, { used: false });
    await expect("another wrangler dev: the revocations list", "GET", "/list", { token: null }, 200, (b) => b.version === version && b.entries.length === 1);
    target = fleet;
    await expect("the fleet's admin route sees the probe's use: 409", "POST", "/use?jkt=keyA", { body: { jti: "probe-1", until } }, 409, { used: true });
    await stopWrangler(probe);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main() {
  if (process.env.FLEET_PREBUILT !== "1") {
    const build = spawnSync("sh", [join(FLEET, "build.sh")], { stdio: "inherit" });
    if (build.status !== 0) throw new Error("fleet/build.sh failed");
  }
  if (!existsSync(join(FLEET, "build/index.js"))) throw new Error("no fleet/build/index.js: run sh fleet/build.sh");

  target = await startWrangler();
  const version = await contract();
  await stopWrangler(target);

  target = await startWrangler();
  await afterRestart(version);
  await fromAnotherProcess(version);
  await stopWrangler(target);

  target = await startWrangler({ token: null });
  await expect("FLEET_ADMIN_TOKEN unset: 503", "GET", "/list", { token: "anything" }, 503, { error: "FLEET_ADMIN_TOKEN is not set" });
  await stopWrangler(target);
}

try {
  await main();
} catch (error) {
  failed++;
  console.log(`not ok - ${error.stack ?? error}`);
} finally {
  for (const started of [...running]) await stopWrangler(started);
  rmSync(STATE, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
