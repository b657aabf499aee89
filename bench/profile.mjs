// A CPU profile of a workerd isolate through its inspector (bench/profile.py runs this while wrk
// drives the worker). Usage: node bench/profile.mjs INSPECTOR_PORT SECONDS OUT.cpuprofile
// Node 22's own WebSocket client speaks the DevTools protocol; nothing to install.
import { writeFileSync } from "node:fs";

const [port, seconds, out] = process.argv.slice(2);
const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
if (!targets.length) throw new Error("the inspector lists no isolate");
const socket = new WebSocket(targets[0].webSocketDebuggerUrl);
let next = 0;
const waiting = new Map();
const call = (method, params = {}) =>
  new Promise((resolve, reject) => {
    const id = ++next;
    waiting.set(id, { resolve, reject });
    socket.send(JSON.stringify({ id, method, params }));
  });
socket.onmessage = (message) => {
  const reply = JSON.parse(message.data);
  const pending = reply.id && waiting.get(reply.id);
  if (!pending) return;
  waiting.delete(reply.id);
  if (reply.error) pending.reject(new Error(JSON.stringify(reply.error)));
  else pending.resolve(reply.result);
};
await new Promise((resolve, reject) => {
  socket.onopen = resolve;
  socket.onerror = () => reject(new Error("cannot reach the inspector"));
});
await call("Profiler.enable");
await call("Profiler.setSamplingInterval", { interval: 50 });
await call("Profiler.start");
await new Promise((resolve) => setTimeout(resolve, Number(seconds) * 1000));
const { profile } = await call("Profiler.stop");
writeFileSync(out, JSON.stringify(profile));
socket.close();
