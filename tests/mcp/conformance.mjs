// The MCP conformance suite's server scenarios (@modelcontextprotocol/conformance, pinned in
// package.json; its active suite) against an MCP server of our own (tests/mcp/conformance-server.mjs,
// the official SDK): once directly, then through edge-auth as a gateway in wrangler dev, on a public
// rule with `"mcp": {}` (bodies read and checked as JSON-RPC, foreign Origins refused) and
// CORS_ALLOWED_ORIGINS naming the gateway's own origin. Every scenario must pass both ways: what the
// server does right, the edge must not break (streamed answers, server-to-client requests and the
// client's answers to them, sessions, concurrent streams), and its DNS-rebinding check must be met.
//
//   EDGE_AUTH_PREBUILT=1 node tests/mcp/conformance.mjs    (scripts/test.sh runs it after sdk.mjs)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePorts, ROOT } from '../js/devsh.mjs';

const BIN = path.join(ROOT, 'node_modules/.bin');
// Node 22 (node_modules/.bin has it) first: wrangler and the conformance CLI need it.
const ENV = { ...process.env, PATH: `${BIN}:${process.env.PATH ?? ''}`, WRANGLER_SEND_METRICS: 'false', CI: 'true' };
const STARTUP_MS = 300_000;
// A passing run takes seconds; a scenario that hangs costs the CLI 60 s before it gives up on it.
const SUITE_MS = 300_000;

const started = [];

// `promise`, or 'timeout' after `ms` (the timer cleared either way, so it never holds the process).
async function within(promise, ms) {
  let timer;
  const timeout = new Promise((resolve) => { timer = setTimeout(resolve, ms, 'timeout'); });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// A child in a process group of its own, so that stopping it stops its children (workerd) too.
function start(command, args, extraEnv = {}) {
  const child = spawn(command, args, { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...ENV, ...extraEnv } });
  let log = '';
  child.stdout.on('data', (chunk) => { log += chunk; });
  child.stderr.on('data', (chunk) => { log += chunk; });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal)));
  const proc = { child, exited, log: () => log };
  started.push(proc);
  return proc;
}

async function stop(proc) {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  const signal = (name) => {
    try {
      process.kill(-proc.child.pid, name);
    } catch {
      // already gone
    }
  };
  signal('SIGTERM');
  if (await within(proc.exited, 10_000) === 'timeout') {
    signal('SIGKILL');
    await within(proc.exited, 5_000);
  }
}

const stopAll = () => Promise.all(started.map(stop));
for (const name of ['SIGINT', 'SIGTERM']) {
  process.on(name, async () => {
    await stopAll();
    process.exit(1);
  });
}

// Resolves once `url` answers at all (any status); rejects if `proc` exits or time runs out.
async function answering(proc, url, what) {
  const deadline = Date.now() + STARTUP_MS;
  for (;;) {
    try {
      await fetch(url, { signal: AbortSignal.timeout(2_000) });
      return;
    } catch {
      // not yet
    }
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) {
      throw new Error(`${what} exited before it answered:\n${proc.log().slice(-4000)}`);
    }
    if (Date.now() > deadline) throw new Error(`${what} did not answer in ${STARTUP_MS / 1000} s:\n${proc.log().slice(-4000)}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

function startServer(port) {
  return start(process.execPath, ['tests/mcp/conformance-server.mjs', String(port)]);
}

// The worker as a gateway in front of the server. .dev.vars gives AUTH0_DOMAIN and AUTH0_AUDIENCE;
// a public rule never asks the issuer anything. Local KV and cache go to a folder of this run's own.
function startWorker(port, inspectorPort, serverPort, state) {
  const routes = [{ path: '/mcp', methods: ['GET', 'POST', 'DELETE'], auth: 'public', mcp: {} }];
  const vars = {
    ORIGIN_URL: `http://127.0.0.1:${serverPort}`,
    ROUTES: JSON.stringify(routes),
    // The suite's DNS-rebinding scenario sends the URL's own origin and expects it admitted.
    CORS_ALLOWED_ORIGINS: `http://127.0.0.1:${port}`,
  };
  const args = ['dev', '--ip', '127.0.0.1', '--port', String(port), '--inspector-port', String(inspectorPort),
    '--show-interactive-dev-session=false', '--persist-to', state];
  for (const [name, value] of Object.entries(vars)) args.push('--var', `${name}:${value}`);
  return start(path.join(BIN, 'wrangler'), args, { EDGE_AUTH_PREBUILT: '1' });
}

// Runs the active suite against `url`; returns per-scenario results read from its checks.json files.
async function runSuite(url, label) {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), `edge-auth-conformance-${label.replace(/\W+/g, '-')}-`));
  const began = Date.now();
  const cli = start(path.join(BIN, 'conformance'), ['server', '--url', url, '--suite', 'active', '-o', out]);
  const ended = await within(cli.exited, SUITE_MS);
  if (ended === 'timeout') await stop(cli);
  const seconds = ((Date.now() - began) / 1000).toFixed(1);
  const log = cli.log();
  const names = [...log.matchAll(/^=== Running scenario: (\S+) ===$/gm)].map((m) => m[1]);
  const announced = Number(log.match(/^Running active suite \((\d+) scenarios\)/m)?.[1] ?? NaN);
  const dirs = fs.readdirSync(out);
  const scenarios = names.map((name) => {
    const dir = dirs.find((d) => d.startsWith(`server-${name}-`) && /^\d{4}-/.test(d.slice(`server-${name}-`.length)));
    const checks = dir ? JSON.parse(fs.readFileSync(path.join(out, dir, 'checks.json'), 'utf8')) : [];
    // A warning counts as a failure: a scenario passes only when every check it makes succeeds.
    const bad = checks.filter((c) => c.status === 'FAILURE' || c.status === 'WARNING');
    return { name, checks, ok: checks.length > 0 && bad.length === 0, bad };
  });
  const checks = scenarios.flatMap((s) => s.checks).filter((c) => c.status !== 'INFO');
  const passedChecks = checks.filter((c) => c.status === 'SUCCESS').length;
  const passed = scenarios.filter((s) => s.ok).length;
  const ok = ended === 0 && names.length === announced && names.length > 0 && passed === names.length;
  console.log(`conformance ${label}: ${passed}/${Number.isNaN(announced) ? '?' : announced} scenarios, `
    + `${passedChecks}/${checks.length} checks passed in ${seconds} s${ended === 'timeout' ? ' (timed out)' : ''}`);
  if (!ok) {
    for (const s of scenarios.filter((x) => !x.ok)) {
      const why = s.bad.map((c) => `${c.id}: ${c.status} ${c.errorMessage ?? ''}`).join('; ') || 'no checks recorded';
      console.log(`  FAILED ${s.name}: ${why}`);
    }
    // Failed checks end the CLI with 1; anything else (a timeout, a crash) shows its own output.
    if (ended !== 1 || names.length !== announced) console.log(`  the CLI ended with ${ended}; its last output:\n${log.slice(-3000)}`);
    console.log(`  results kept in ${out}`);
  } else {
    fs.rmSync(out, { recursive: true, force: true });
  }
  return { ok, scenarios };
}

const began = Date.now();
let failed = false;
const state = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-auth-conformance-state-'));
try {
  const [serverPort] = await freePorts(1);
  const server = startServer(serverPort);
  const serverUrl = `http://127.0.0.1:${serverPort}/mcp`;
  await answering(server, serverUrl, 'the conformance server');
  const direct = await runSuite(serverUrl, 'direct');

  // A port found free may be taken by someone else before wrangler binds it: then other ports.
  let worker;
  let workerPort;
  for (let attempt = 1; ; attempt += 1) {
    const [port, inspectorPort] = await freePorts(2);
    worker = startWorker(port, inspectorPort, serverPort, state);
    try {
      await answering(worker, `http://127.0.0.1:${port}/`, 'wrangler dev');
      workerPort = port;
      break;
    } catch (error) {
      await stop(worker);
      if (attempt >= 3 || !worker.log().includes('Address already in use')) throw error;
    }
  }
  const gateway = await runSuite(`http://127.0.0.1:${workerPort}/mcp`, 'through edge-auth');

  // Through the gateway the foreign Origin must be refused by the edge itself, not by the server.
  const rebinding = gateway.scenarios.find((s) => s.name === 'dns-rebinding-protection')
    ?.checks.find((c) => c.id === 'localhost-host-rebinding-rejected');
  const byEdge = rebinding?.details?.statusCode === 403 && JSON.stringify(rebinding.details.body ?? '').includes('origin_not_allowed');
  if (!byEdge) console.log(`  FAILED the edge did not refuse the foreign Origin itself: ${JSON.stringify(rebinding?.details)}`);
  failed = !direct.ok || !gateway.ok || !byEdge;
  if (failed && !gateway.ok) console.error(`wrangler dev's last output:\n${worker.log().slice(-3000)}`);
} catch (error) {
  console.log(`FAILED - the conformance run did not finish: ${error?.stack ?? error}`);
  failed = true;
} finally {
  await stopAll();
  fs.rmSync(state, { recursive: true, force: true });
}
if (failed) {
  console.log('MCP conformance test: FAILED');
  process.exit(1);
}
console.log(`MCP conformance test passed (${((Date.now() - began) / 1000).toFixed(0)} s with the startups)`);
