// ./scripts/dev.sh as the JavaScript tests start it (tests/browser/demo.mjs, tests/mcp/sdk.mjs): on
// ports of their own, in a process group of its own, so that stopping it stops wrangler, workerd,
// the issuer and whatever else it started.
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const STARTUP_MS = 300_000;

// n distinct free loopback ports: all held open until each is known, so no two are the same.
export async function freePorts(n) {
  const servers = await Promise.all(Array.from({ length: n }, () => new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => resolve(server));
    server.on('error', reject);
  })));
  const ports = servers.map((server) => server.address().port);
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

// `dev.sh <mode>` with `env` (its *_PORT variables). `ready` resolves with what follows `marker: ` on
// the line dev.sh prints once everything answers (`page`, `mcp`).
export function startDev(mode, env, marker) {
  const child = spawn('sh', ['scripts/dev.sh', mode], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env, EDGE_AUTH_PREBUILT: '1', WRANGLER_SEND_METRICS: 'false', CI: 'true' },
  });
  let log = '';
  const line = new RegExp(`^${marker}: (\\S+)$`, 'm');
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`dev.sh ${mode} printed no ${marker} line in 5 minutes`)), STARTUP_MS);
    const read = (chunk) => {
      log += chunk;
      const match = log.match(line);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout.on('data', read);
    child.stderr.on('data', read);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`dev.sh ${mode} exited (${code}) before printing its ${marker} line`));
    });
  });
  const stop = async () => {
    if (child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.on('exit', resolve));
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      return;
    }
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
  };
  return { ready, stop, log: () => log };
}
