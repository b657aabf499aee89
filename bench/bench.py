#!/usr/bin/env python3
"""edge-auth against the JavaScript a Workers user would write instead, on this machine.

Run through ./scripts/bench.sh, which installs the tools first. This script:
  1. builds the release worker and the dev issuer, bundles the worker with
     `wrangler deploy --dry-run --outdir` (what would ship) and the jose peer (bench/peer/) with esbuild;
  2. starts the dev issuer (JWKS on a loopback port) and mints thousands of distinct tokens,
     one token to repeat, and one holding read:messages;
  3. serves each worker with bare workerd, one process each on its own loopback port, so the CPU
     of each is its own (wrangler dev's proxy would cap both near 250 req/s);
  4. checks that both answer the same, warms both up, then drives each path with wrk at a fixed
     concurrency, alternating the workers, for several rounds;
  5. writes medians, ratios and per-run numbers to bench/results/<UTC time>.md and prints them.

Standard library only. Every loop is bounded, every address is 127.0.0.1, and only the process
groups started here are ever signalled.
"""

import argparse
import datetime
import gzip
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "target" / "bench"  # scratch: bundles, configs, tokens, logs (git-ignored with target/)
RESULTS = ROOT / "bench" / "results"
LUA = ROOT / "bench" / "wrk.lua"
PEER_SOURCE = ROOT / "bench" / "peer" / "worker.js"
ISSUER_BIN = ROOT / "target" / "release" / "edge-auth-dev-issuer"
AUDIENCE = "https://edge-auth.local/api"  # the dev issuer's default audience
CLK_TCK = os.sysconf("SC_CLK_TCK")
# A run in which other processes used more than this share of a core is flagged: on a 2-core
# machine a background build changes the numbers more than most code changes do.
BACKGROUND_FLAG_CORES = 0.15

# (key, label, path, token file name or None)
SCENARIOS = [
    ("public", "`/api/public`", "/api/public", None),
    ("distinct", "`/api/private`, distinct tokens", "/api/private", "distinct.txt"),
    ("repeated", "`/api/private`, one token repeated", "/api/private", "repeated.txt"),
    ("scoped", "`/api/private-scoped`", "/api/private-scoped", "scoped.txt"),
]
WORKERS = ["ours", "peer"]
NAMES = {"ours": "edge-auth", "peer": "jose peer", "two": "edge-auth, 2 issuers", "obs": "edge-auth, ANALYTICS",
         "dp": "edge-auth, DPoP"}
# Rows of edge-auth's own, each against one of its own rows of the same round (no jose peer does
# either): DPoP (a bound token, cached after its first use, with a new proof on every request: the
# proof's parse, checks, signature and replay memory; on a workerd of its own, started afresh for
# each run, since an isolate takes a proof once and holds at most 131,072 at a time, fewer than
# a default run sends) next to the repeated Bearer token; and a worker
# trusting two issuers, the tokens' issuer listed second, next to the single-issuer worker.
# (key, worker, label, path, token file, the row it is judged against)
OWN_ROWS = [
    ("dpop", "dp", "`/api/private`, DPoP: bound tokens, a new proof each request", "/api/private", "proofs.txt",
     ("repeated", "ours")),
    ("distinct", "two", "`/api/private`, distinct tokens, 2 issuers (theirs listed second)", "/api/private",
     "distinct.txt", ("distinct", "ours")),
    ("repeated", "two", "`/api/private`, one token repeated, 2 issuers", "/api/private", "repeated.txt",
     ("repeated", "ours")),
    # An ANALYTICS binding (a data point per request) with DECISION_LOG at its default, refusals.
    ("public", "obs", "`/api/public`, ANALYTICS bound", "/api/public", None, ("public", "ours")),
    ("repeated", "obs", "`/api/private`, one token repeated, ANALYTICS bound", "/api/private", "repeated.txt",
     ("repeated", "ours")),
]


def paired_key(row):
    """The scenario name of the baseline run made next to an own row."""
    return f"{row[0]} (next to {NAMES[row[1]]})"


# BENCH_OWN_ROWS=0 leaves edge-auth's own rows out (a quicker comparison with the jose peer).
if os.environ.get("BENCH_OWN_ROWS") == "0":
    OWN_ROWS = []
# Proofs made per second of a DPoP run: above what one workerd answers here, so none is sent twice.
PROOFS_PER_SECOND = 4500
# DPoP clients (keys, each with its bound token) the DPoP row's proofs are spread over.
DPOP_CLIENTS = 16
# The prefix of progress lines; bench/soak.py, which imports this module, sets its own.
TAG = "bench"


def say(message):
    print(f"{TAG}: {message}", file=sys.stderr, flush=True)


def run(cmd, **kwargs):
    """A build step: echo it, run it from the repo root, fail loudly."""
    say("$ " + " ".join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, check=True, **kwargs)


# ---------------------------------------------------------------- building and bundling


def compatibility():
    """The compatibility date and flags of wrangler.toml, so bare workerd runs what would deploy."""
    text = (ROOT / "wrangler.toml").read_text()
    try:
        import tomllib

        config = tomllib.loads(text)
        return config["compatibility_date"], list(config.get("compatibility_flags", []))
    except ImportError:  # Python < 3.11: the two top-level keys are simple enough for a regex
        date = re.search(r'^compatibility_date\s*=\s*"([^"]+)"', text, re.M).group(1)
        flags = re.search(r"^compatibility_flags\s*=\s*\[([^\]]*)\]", text, re.M)
        return date, re.findall(r'"([^"]+)"', flags.group(1)) if flags else []


def build(workdir):
    ours, upload = build_worker(workdir)
    return ours, bundle_peer(workdir), upload


def build_worker(workdir):
    """The release worker (and the dev issuer), bundled as `wrangler deploy` would ship it, in
    workdir/ours. Returns that folder and wrangler's "Total Upload" line."""
    # scripts/build.sh honours EDGE_AUTH_PREBUILT=1 (bench the build/ already there).
    run(["sh", "scripts/build.sh"])
    run(["cargo", "build", "--quiet", "--release", "-p", "edge-auth-dev-issuer"])

    ours = workdir / "ours"
    shutil.rmtree(ours, ignore_errors=True)  # old wasm files carry other hashes in their names
    # `npx wrangler`: its launcher picks the Node 22 that tools.sh put first on PATH. wrangler runs
    # the [build] command again; EDGE_AUTH_PREBUILT=1 makes that a no-op after the build above.
    env = dict(os.environ, EDGE_AUTH_PREBUILT="1", WRANGLER_SEND_METRICS="false")
    out = run(["npx", "wrangler", "deploy", "--dry-run", "--outdir", ours],
              env=env, stdout=subprocess.PIPE, text=True)  # errors go straight to the terminal
    upload = next((line.strip() for line in out.stdout.splitlines() if "Total Upload" in line), "")
    return ours, upload


def bundle_peer(workdir, source=PEER_SOURCE, name="peer"):
    """A JavaScript peer bundled with esbuild as wrangler would: workdir/name/worker.js."""
    peer = workdir / name
    shutil.rmtree(peer, ignore_errors=True)
    # The conditions wrangler uses, so jose resolves to the build a deployed peer would get.
    run([ROOT / "node_modules" / ".bin" / "esbuild", source, "--bundle", "--format=esm",
         "--platform=neutral", "--main-fields=module,main", "--conditions=workerd,worker,browser",
         "--log-level=warning", f"--outfile={peer / 'worker.js'}"])
    return peer


def main_stem():
    """The file name (without suffix) of wrangler.toml's `main`: the bundle's entry module."""
    return Path(re.search(r'^main\s*=\s*"([^"]+)"', (ROOT / "wrangler.toml").read_text(), re.M).group(1)).stem


def modules_of(bundle_dir, main_stem):
    """workerd's module list for a wrangler dry-run bundle: the entry first, then what it imports
    (by the file names the entry imports them as)."""
    kinds = {".js": "esModule", ".mjs": "esModule", ".wasm": "wasm", ".bin": "data", ".txt": "text"}
    # Source maps and wrangler's README.md are beside the modules, not modules.
    files = sorted(p for p in bundle_dir.iterdir() if p.is_file() and p.suffix not in (".map", ".md"))
    unknown = [p.name for p in files if p.suffix not in kinds]
    if unknown:
        raise SystemExit(f"bench: unexpected files in the wrangler bundle: {unknown}")
    entries = [p for p in files if p.suffix in (".js", ".mjs") and p.stem == main_stem]
    if len(entries) != 1:
        entries = [p for p in files if p.suffix in (".js", ".mjs")][:1]
    if not entries:
        raise SystemExit(f"bench: no JavaScript entry in {bundle_dir}")
    ordered = entries + [p for p in files if p != entries[0]]
    return [(p.name, kinds[p.suffix], p) for p in ordered]


def workerd_binary():
    for candidate in [ROOT / "node_modules/@cloudflare/workerd-linux-64/bin/workerd",
                      ROOT / "node_modules/workerd/bin/workerd"]:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise SystemExit("bench: no workerd binary under node_modules (npm ci installs it with wrangler)")


# The ANALYTICS binding of the "obs" rows: `writeDataPoint` checks the point's shape and counts it.
# On Cloudflare the call only buffers the point in the runtime, which sends points in batches
# outside the request. workerd's own analyticsEngine binding instead makes an HTTP subrequest to a
# service for every point: with it, the rows measured +121 to +143 us of CPU per request over the
# unbound worker, against single digits with this stub, so it measures workerd's stand-in.
ANALYTICS_STUB = """export default function () {
  let points = 0;
  return {
    writeDataPoint(point) {
      if (point.indexes.length !== 1 || point.blobs.length > 20 || point.doubles.length > 20) throw new TypeError("bad point");
      points += 1;
      if (points === 1) console.log("edge-auth-bench: a data point was written");
    },
  };
}"""


def capnp_config(path, modules, bindings, port, date, flags, analytics=False, kv=None, v8_flags=()):
    """One worker on one loopback socket. Its only way out is the loopback interface: enough for
    the dev issuer's JWKS, and nothing else is reachable. `analytics`: an `ANALYTICS` binding
    with Analytics Engine's `writeDataPoint` (see ANALYTICS_STUB). `kv`: a `JWKS_KV` namespace
    served by a second worker of this source (workerd's kvNamespace binding speaks HTTP to it).
    BENCH_V8_FLAGS (e.g. --trace-wasm-compilation-times) and `v8_flags` are for finding where time
    goes (cold.py's labelled eager-compile column), never for the figures a ratio or a must rests
    on: a deployed worker runs with the runtime's own flags."""
    def quote(s):
        return json.dumps(str(s))  # a JSON string is a valid Cap'n Proto text literal here

    module_lines = ",\n    ".join(
        f"(name = {quote(name)}, {kind} = embed {quote(os.path.relpath(file, path.parent))})"
        for name, kind, file in modules)
    binding_lines = [f"(name = {quote(k)}, text = {quote(v)})" for k, v in bindings.items()]
    services = ['(name = "main", worker = .worker)', '(name = "loopback", network = (allow = ["local"]))']
    config_extra, workers_extra = "", ""
    if analytics:
        binding_lines.append('(name = "ANALYTICS", wrapped = (moduleName = "edge-auth-bench:analytics"))')
        config_extra += f"""
  extensions = [(modules = [(name = "edge-auth-bench:analytics", internal = true, esModule = {quote(ANALYTICS_STUB)})])],"""
    if kv is not None:
        binding_lines.append('(name = "JWKS_KV", kvNamespace = "kv")')
        services.append('(name = "kv", worker = .kv)')
        workers_extra += f"""
const kv :Workerd.Worker = (
  modules = [(name = "kv.js", esModule = {quote(kv)})],
  compatibilityDate = {quote(date)},
);
"""
    v8_flags = list(v8_flags) + os.environ.get("BENCH_V8_FLAGS", "").split()
    if v8_flags:
        config_extra += f"\n  v8Flags = [{', '.join(quote(f) for f in v8_flags)}],"
    flag_list = ", ".join(quote(f) for f in flags)
    binding_text = ",\n    ".join(binding_lines)
    service_text = ",\n    ".join(services)
    path.write_text(f"""# Generated by bench/bench.py.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    {service_text},
  ],{config_extra}
  sockets = [(name = "http", address = "127.0.0.1:{port}", http = (), service = "main")],
);

const worker :Workerd.Worker = (
  modules = [
    {module_lines}
  ],
  compatibilityDate = {quote(date)},
  compatibilityFlags = [{flag_list}],
  bindings = [
    {binding_text}
  ],
  globalOutbound = "loopback",
);
{workers_extra}""")


# ---------------------------------------------------------------- processes


class Processes:
    """Long-running children, each in a session (and so a process group) of its own, so that
    stopping one stops whatever it started and nothing else."""

    def __init__(self):
        self.procs = []

    def start(self, cmd, log):
        with open(log, "wb") as out:
            proc = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop(self, proc):
        """Stops one child started here (its own process group) and forgets it."""
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs.remove(proc)

    def stop_all(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # the group this script created for it
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, token=None, timeout=10):
    """One GET on 127.0.0.1: (status, headers, parsed JSON body or raw text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace")
        try:
            body = json.loads(body)
        except ValueError:
            pass
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


def get_dpop(port, path, token, proof, timeout=10):
    """One GET with a DPoP-bound token and its proof: the status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Authorization": f"DPoP {token}", "DPoP": proof})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def wait_until_serving(proc, port, path, log, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: {proc.args[0]} exited with {proc.returncode}; see {log}:\n"
                             + log.read_text(errors="replace")[-3000:])
        try:
            if get(port, path, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"bench: nothing answered 200 on 127.0.0.1:{port}{path} within {seconds} s; see {log}")


# ---------------------------------------------------------------- measuring


def process_cpu_ticks(pid):
    """utime + stime of a process, all threads, in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces
    return int(fields[11]) + int(fields[12])


def machine_busy_ticks():
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return user + nice + system + irq + softirq + steal


def children_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def drive(worker_proc, port, path, tokens, seconds, threads, connections, dpop_token="", method="GET", body=None):
    """One wrk run. Returns its numbers plus the workerd CPU per request and how much CPU the rest
    of the machine used meanwhile. `body`: a file whose text every request sends (with `method`)."""
    env = dict(os.environ, BENCH_PATH=path, BENCH_TOKENS=str(tokens or ""), BENCH_DPOP_TOKEN=dpop_token,
               BENCH_METHOD=method, BENCH_BODY=str(body or ""))
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(LUA),
           f"http://127.0.0.1:{port}"]

    def sample():
        return process_cpu_ticks(worker_proc.pid), machine_busy_ticks(), children_cpu_seconds(), time.monotonic()

    cpu0, busy0, wrk0, t0 = sample()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 120)
    cpu1, busy1, wrk1, t1 = sample()
    line = next((l for l in out.stdout.splitlines() if l.startswith("BENCH_RESULT ")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit(f"bench: wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    result = json.loads(line[len("BENCH_RESULT "):])
    requests = max(result["requests"], 1)
    worker_s = (cpu1 - cpu0) / CLK_TCK
    wrk_s = wrk1 - wrk0
    other_s = max((busy1 - busy0) / CLK_TCK - worker_s - wrk_s, 0.0)
    result.update(
        rps=result["requests"] / (result["duration_us"] / 1e6),
        cpu_us=worker_s * 1e6 / requests,
        worker_cores=worker_s / (t1 - t0),
        wrk_cores=wrk_s / (t1 - t0),
        background_cores=other_s / (t1 - t0),
        socket_errors=sum(result[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")),
    )
    return result


def check_equivalent(ports, tokens):
    """Both workers give the same answers before they are timed; a mismatch in a 2xx answer (or
    an error where a 2xx belongs) stops the benchmark, since it would time different work."""
    cases = [
        ("/api/public", None, 200),
        ("/api/private", tokens["distinct"][0], 200),
        ("/api/private", tokens["repeated"][0], 200),
        ("/api/private-scoped", tokens["scoped"][0], 200),
        ("/api/private-scoped", tokens["repeated"][0], 403),
        ("/api/private", None, 401),
        ("/api/private", "not.a.token", 401),
    ]
    problems = []
    for path, token, expected in cases:
        answers = {w: get(ports[w], path, token) for w in WORKERS}
        for w, (status, _, body) in answers.items():
            if status != expected:
                problems.append(f"{NAMES[w]} {path}: {status} {body}, expected {expected}")
        (_, ours_headers, ours_body), (_, peer_headers, peer_body) = answers["ours"], answers["peer"]
        if expected == 200 and ours_body != peer_body:
            problems.append(f"{path}: the bodies differ: {ours_body} / {peer_body}")
        for name in ("content-type", "cache-control"):
            if ours_headers.get(name) != peer_headers.get(name):
                say(f"note: {path} {name} differs: {ours_headers.get(name)!r} / {peer_headers.get(name)!r}")
        ours_code, peer_code = (b.get("error") if isinstance(b, dict) else None for b in (ours_body, peer_body))
        if ours_code != peer_code:
            say(f"note: {path} error codes differ: {ours_code} / {peer_code}")
    if problems:
        raise SystemExit("bench: the workers do not answer as expected:\n  " + "\n  ".join(problems))


# ---------------------------------------------------------------- reporting


def kib(n):
    return f"{n / 1024:.1f} KiB"


def fmt_ms(us):
    return f"{us / 1000:.2f} ms"


def report(args, runs, meta):
    med = {}
    for key, *_ in SCENARIOS:
        for w in WORKERS:
            rs = [r for r in runs if r["scenario"] == key and r["worker"] == w]
            med[key, w] = {m: statistics.median(r[m] for r in rs) for m in ("rps", "p50_us", "p99_us", "cpu_us")}
            med[key, w]["non2xx"] = sum(r["non2xx"] for r in rs)
            med[key, w]["socket_errors"] = sum(r["socket_errors"] for r in rs)

    lines = [
        f"# edge-auth benchmark, {meta['stamp']}",
        "",
        f"- code: `{meta['commit']}`{meta['dirty']}",
        f"- load: wrk {meta['wrk']}, {args.threads} thread(s), {args.connections} connections, "
        f"{args.seconds} s per run, "
        f"{args.rounds} round(s), workers alternated (order swapped every round); "
        f"warm-up {args.warmup} s per path and worker, not counted",
        f"- servers: bare workerd {meta['workerd']}, one process per worker, compatibility date {meta['date']}"
        + (f", flags {', '.join(meta['flags'])}" if meta["flags"] else "")
        + f"; peer: jose {meta['jose']} (`bench/peer/worker.js`)",
        f"- tokens: {args.tokens} distinct RS256 tokens cycled (each sent about "
        f"{meta['reuse']:.0f} times per run: a per-isolate token cache holding {args.tokens} or more entries "
        f"would make that row cache hits), one repeated token, one scoped token",
        f"- machine: {os.cpu_count()} cores ({meta['cpu']}), shared by wrk, the workerd under test and anything "
        "else running; numbers are medians across rounds",
        f"- shipped wasm: {meta['wasm_raw']} bytes raw ({kib(meta['wasm_raw'])}), "
        f"{meta['wasm_gz']} bytes gzip -9 ({kib(meta['wasm_gz'])})"
        + (f"; wrangler: {meta['upload']}" if meta["upload"] else ""),
        f"- peer bundle: {meta['peer_raw']} bytes raw ({kib(meta['peer_raw'])}), "
        f"{meta['peer_gz']} bytes gzip -9 ({kib(meta['peer_gz'])})",
        "",
        "| path | peer req/s | edge-auth req/s | req/s ours/peer | peer p50 / p99 | edge-auth p50 / p99 "
        "| peer CPU/req | edge-auth CPU/req | CPU ours/peer |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    own = {}
    for key, w, *_ in OWN_ROWS:
        rs = [r for r in runs if r["scenario"] == key and r["worker"] == w]
        if rs:
            own[key, w] = {m: statistics.median(r[m] for r in rs) for m in ("rps", "p50_us", "p99_us", "cpu_us")}
    for key, label, *_ in SCENARIOS:
        o, p = med[key, "ours"], med[key, "peer"]
        lines.append(
            f"| {label} | {p['rps']:,.0f} | {o['rps']:,.0f} | {o['rps'] / p['rps']:.2f}x "
            f"| {fmt_ms(p['p50_us'])} / {fmt_ms(p['p99_us'])} | {fmt_ms(o['p50_us'])} / {fmt_ms(o['p99_us'])} "
            f"| {p['cpu_us']:.0f} us | {o['cpu_us']:.0f} us | {o['cpu_us'] / p['cpu_us']:.2f}x |")
    if own:
        lines += ["", "Edge-auth's own rows, each against a run of its baseline made next to it in each round:", "",
                  "| path | req/s | p50 / p99 | CPU/req | against | its req/s | its CPU/req | req/s ratio | CPU added/req |",
                  "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
        for key, w, label, _, _, base in OWN_ROWS:
            if (key, w) not in own:
                continue
            o = own[key, w]
            paired = [r for r in runs if r["scenario"] == paired_key((key, w)) and r["worker"] == base[1]]
            b = {m: statistics.median(r[m] for r in paired) for m in ("rps", "cpu_us")} if paired else med[base]
            lines.append(
                f"| {label} | {o['rps']:,.0f} | {fmt_ms(o['p50_us'])} / {fmt_ms(o['p99_us'])} | {o['cpu_us']:.0f} us "
                f"| {base[0]} ({NAMES[base[1]]}) | {b['rps']:,.0f} | {b['cpu_us']:.0f} us | {o['rps'] / b['rps']:.2f}x "
                f"| {o['cpu_us'] - b['cpu_us']:+.0f} us |")
    lines.append("")
    lines.append("req/s ours/peer above 1 means edge-auth is faster; CPU ours/peer below 1 means it uses less "
                 "workerd CPU (utime + stime of its process over the run, over requests completed) per request. "
                 "Ratios are of the medians. p50 and p99 are wrk's, which corrects for coordinated omission: "
                 "one pause of T ms in workerd adds samples up to T, so the few pauses of tens of ms per run "
                 "set p99, for both workers alike.")

    warnings = []
    bad = [r for r in runs if r["non2xx"] or r["socket_errors"]]
    for r in bad:
        warnings.append(f"round {r['round']} {NAMES[r['worker']]} {r['scenario']}: {r['non2xx']} non-2xx responses, "
                        f"{r['socket_errors']} socket errors")
    busy = [r["background_cores"] for r in runs if r["background_cores"] > BACKGROUND_FLAG_CORES]
    if busy:
        warnings.append(f"{len(busy)} of {len(runs)} runs shared the machine with other work: processes other than "
                        f"wrk and the workerd under test used up to {max(busy):.2f} of a core (column "
                        "\"other cores\"); compare such numbers with care")
    warnings += meta["warmup_warnings"]
    lines += ["", "## Warnings", ""]
    lines += [f"- {w}" for w in warnings] if warnings else ["- none: every response was 2xx, no socket errors, "
                                                            "no other process above "
                                                            f"{BACKGROUND_FLAG_CORES} of a core"]

    lines += ["", "## Every run", "",
              "| round | path | worker | req/s | p50 | p99 | CPU/req | workerd cores | wrk cores | other cores "
              "| non-2xx |",
              "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        lines.append(f"| {r['round']} | {r['scenario']} | {NAMES[r['worker']]} | {r['rps']:,.0f} "
                     f"| {fmt_ms(r['p50_us'])} "
                     f"| {fmt_ms(r['p99_us'])} | {r['cpu_us']:.0f} us | {r['worker_cores']:.2f} | {r['wrk_cores']:.2f} "
                     f"| {r['background_cores']:.2f} | {r['non2xx']} |")
    lines += ["", "CPU/req and cores are utime + stime from /proc over each run's wall time; \"other cores\" is the "
              "machine's busy time less the workerd under test and wrk.", "",
              f"Total wall time: {meta['wall']:.0f} s.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def git(*args):
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("seconds", nargs="?", type=int, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("rounds", nargs="?", type=int, default=3,
                        help="rounds, each runs every path on both workers (default 3)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per path and worker (default 3)")
    parser.add_argument("--tokens", type=int, default=5000, help="distinct tokens to cycle through (default 5000)")
    # Two cores are shared by wrk and workerd: one wrk thread keeps 8 connections busy and leaves
    # the other core to the worker's single request thread.
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (default 8)")
    args = parser.parse_args()
    if not (1 <= args.seconds <= 600 and 1 <= args.rounds <= 50 and 0 <= args.warmup <= 120
            and 1 <= args.tokens <= 1_000_000 and 1 <= args.threads <= args.connections <= 1000):
        parser.error("out of range: 1-600 s per run, 1-50 rounds, 0-120 s warm-up, 1-1000000 tokens, "
                     "1 <= threads <= connections <= 1000")

    started = time.monotonic()
    now = datetime.datetime.now(datetime.timezone.utc)
    WORK.mkdir(parents=True, exist_ok=True)
    date, flags = compatibility()
    try:
        ours_dir, peer_dir, upload = build(WORK)
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"bench: `{' '.join(map(str, e.cmd))}` failed (exit {e.returncode}); to bench the build/ "
                         "already there: EDGE_AUTH_PREBUILT=1 ./scripts/bench.sh")
    wasm = sorted(p for p in ours_dir.iterdir() if p.suffix == ".wasm")
    if not wasm:
        raise SystemExit(f"bench: no .wasm module in {ours_dir}")
    wasm_bytes = b"".join(p.read_bytes() for p in wasm)  # one module today; all of them if ever more
    peer_bytes = (peer_dir / "worker.js").read_bytes()
    entry_stem = main_stem()

    procs = Processes()
    # SIGTERM (e.g. from a CI timeout) unwinds through `finally` like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        issuer_port, ports = free_port(), {"ours": free_port(), "peer": free_port()}
        issuer_url = f"http://127.0.0.1:{issuer_port}/"
        # The benchmark's own issuer key, apart from the dev one in .dev-issuer/.
        key_dir = WORK / "issuer"
        issuer = procs.start([ISSUER_BIN, "serve", "--port", issuer_port, "--dir", key_dir], WORK / "issuer.log")
        wait_until_serving(issuer, issuer_port, "/.well-known/jwks.json", WORK / "issuer.log")

        # Tokens outlive the whole run: warm-up and rounds, with an hour to spare.
        planned = (args.warmup + args.seconds * args.rounds) * len(SCENARIOS) * len(WORKERS)
        mint = [ISSUER_BIN, "mint", "--port", issuer_port, "--dir", key_dir, "--exp", planned + 3600]
        say(f"minting {args.tokens} distinct tokens")
        tokens = {
            "distinct": run(mint + ["--count", args.tokens], stdout=subprocess.PIPE, text=True).stdout.split(),
            "repeated": run(mint, stdout=subprocess.PIPE, text=True).stdout.split(),
            "scoped": run(mint + ["--scope", "openid read:messages"], stdout=subprocess.PIPE, text=True).stdout.split(),
        }
        if len(set(tokens["distinct"])) != args.tokens:
            raise SystemExit("bench: the minted tokens are not all distinct")
        for key, values in tokens.items():
            (WORK / f"{key}.txt").write_text("\n".join(values) + "\n")

        workerd = workerd_binary()
        bindings = {
            "ours": {"AUTH0_DOMAIN": f"127.0.0.1:{issuer_port}", "AUTH0_AUDIENCE": AUDIENCE},
            # Never contacted: no token names the first issuer. Its entry only lengthens the lookup.
            "two": {"ISSUERS": json.dumps([{"issuer": "https://another-tenant.example.com/"},
                                           {"domain": f"127.0.0.1:{issuer_port}"}]), "AUTH0_AUDIENCE": AUDIENCE},
            "peer": {"ISSUER": issuer_url, "JWKS_URL": f"{issuer_url}.well-known/jwks.json",
                     "AUTH0_AUDIENCE": AUDIENCE},
        }
        modules = {"ours": modules_of(ours_dir, entry_stem), "peer": [("worker.js", "esModule", peer_dir / "worker.js")]}
        modules["two"] = modules["obs"] = modules["dp"] = modules["ours"]
        bindings["obs"] = bindings["dp"] = bindings["ours"]
        all_workers = WORKERS + ["two", "obs", "dp"]
        ports["two"], ports["obs"], ports["dp"] = free_port(), free_port(), free_port()
        servers = {}

        def start(w):
            experimental = ["--experimental"] if w == "obs" else []
            servers[w] = procs.start([workerd, "serve", *experimental, WORK / f"{w}.capnp"], WORK / f"{w}.log")

        for w in all_workers:
            capnp_config(WORK / f"{w}.capnp", modules[w], bindings[w], ports[w], date, flags, analytics=w == "obs")
            start(w)
        for w in all_workers:
            wait_until_serving(servers[w], ports[w], "/api/public", WORK / f"{w}.log")
        say(f"serving edge-auth on 127.0.0.1:{ports['ours']}, the jose peer on 127.0.0.1:{ports['peer']}, "
            f"the issuer on {issuer_url}")
        check_equivalent(ports, tokens)
        if OWN_ROWS:
            get(ports["obs"], "/api/public")
            deadline = time.time() + 5
            while "a data point was written" not in (WORK / "obs.log").read_text():
                if time.time() > deadline:
                    raise SystemExit("bench: the ANALYTICS worker wrote no data point")
                time.sleep(0.05)
        for token in (tokens["distinct"][0], tokens["repeated"][0]) if OWN_ROWS else ():
            if get(ports["two"], "/api/private", token)[0] != 200:
                raise SystemExit("bench: the two-issuer worker refuses a token of its second issuer")

        # DPoP: DPOP_CLIENTS client keys (each kept by `proof` in a folder of its own), a token bound
        # to each, and proofs made just before each run (a proof's iat must be recent, and each is
        # good once), the clients' in turn. One client alone would meet its share of the isolate's
        # replay memory (docs/dpop.md#replay) long before a run ends.
        clients = []
        for i in range(DPOP_CLIENTS if OWN_ROWS else 0):
            client_dir = WORK / f"dpop-client-{i}"
            jkt = run([ISSUER_BIN, "jkt", "--dir", client_dir], stdout=subprocess.PIPE, text=True).stdout.strip()
            bound = run(mint + ["--dpop-jkt", jkt], stdout=subprocess.PIPE, text=True).stdout.strip()
            clients.append((client_dir, bound))
        dpop_url = f"http://127.0.0.1:{ports['dp']}/api/private"

        def make_proofs(seconds, name="proofs.txt"):
            each = -(-max(seconds, 1) * PROOFS_PER_SECOND // len(clients))
            say(f"making {each * len(clients)} DPoP proofs, {each} for each of {len(clients)} clients")
            per_client = [
                [f"{bound} {proof}" for proof in subprocess.run(
                    [str(c) for c in (ISSUER_BIN, "proof", "--method", "GET", "--url", dpop_url, "--token", bound,
                                      "--dir", client_dir, "--count", each)],
                    cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True).stdout.split()]
                for client_dir, bound in clients
            ]
            (WORK / name).write_text("".join(line + "\n" for turn in zip(*per_client) for line in turn))

        if OWN_ROWS:
            make_proofs(1)
            bound, first = (WORK / "proofs.txt").read_text().split("\n")[0].split(" ")
            if get_dpop(ports["dp"], "/api/private", bound, first) != 200:
                raise SystemExit("bench: edge-auth refuses the DPoP proof it is to be timed on")

        def one(w, scenario, seconds):
            key, _, path, token_file = scenario
            return drive(servers[w], ports[w], path, WORK / token_file if token_file else None, seconds,
                         args.threads, args.connections)

        def own(row, seconds):
            key, w, _, path, token_file, _ = row
            if key == "dpop":
                # A fresh isolate (an empty replay memory), warmed for a second on proofs of its own.
                procs.stop(servers["dp"])
                start("dp")
                wait_until_serving(servers["dp"], ports["dp"], "/api/public", WORK / "dp.log")
                make_proofs(1, "proofs-warm.txt")
                drive(servers["dp"], ports["dp"], path, WORK / "proofs-warm.txt", 1, args.threads, args.connections,
                      "pairs")
                make_proofs(seconds + 1)
            return drive(servers[w], ports[w], path, WORK / token_file if token_file else None, seconds, args.threads,
                         args.connections, "pairs" if key == "dpop" else "")

        warmup_warnings = []
        if args.warmup:
            say(f"warming up: {args.warmup} s per path and worker")
            for w in WORKERS:
                for scenario in SCENARIOS:
                    r = one(w, scenario, args.warmup)
                    if r["non2xx"] or r["socket_errors"]:
                        warmup_warnings.append(f"warm-up {NAMES[w]} {scenario[0]}: {r['non2xx']} non-2xx, "
                                               f"{r['socket_errors']} socket errors")
            for row in OWN_ROWS:
                r = own(row, args.warmup)
                if r["non2xx"] or r["socket_errors"]:
                    warmup_warnings.append(f"warm-up {NAMES[row[1]]} {row[0]}: {r['non2xx']} non-2xx, "
                                           f"{r['socket_errors']} socket errors")

        runs = []
        for rnd in range(1, args.rounds + 1):
            order = WORKERS if rnd % 2 else WORKERS[::-1]  # swapped every round, against drift
            for scenario in SCENARIOS:
                for w in order:
                    r = one(w, scenario, args.seconds)
                    r.update(round=rnd, scenario=scenario[0], worker=w)
                    runs.append(r)
                    say(f"round {rnd}/{args.rounds} {scenario[0]:9} {NAMES[w]:10} {r['rps']:9,.0f} req/s  "
                        f"p50 {fmt_ms(r['p50_us'])}  p99 {fmt_ms(r['p99_us'])}  {r['cpu_us']:5.0f} us CPU/req"
                        + (f"  NON-2XX {r['non2xx']}" if r["non2xx"] else ""))
            # Each own row next to a run of its baseline made just before or after it (the order
            # swapped every round): a baseline from earlier in the round would fold the machine's
            # drift over the round into the difference.
            for row in OWN_ROWS:
                key, w, _, _, _, base = row
                pair = ["own", "base"] if rnd % 2 else ["base", "own"]
                for kind in pair:
                    if kind == "own":
                        r = own(row, args.seconds)
                        r.update(round=rnd, scenario=key, worker=w)
                    else:
                        scenario = next(s for s in SCENARIOS if s[0] == base[0])
                        r = one(base[1], scenario, args.seconds)
                        r.update(round=rnd, scenario=paired_key(row), worker=base[1])
                    runs.append(r)
                    say(f"round {rnd}/{args.rounds} {r['scenario']:9} {NAMES[r['worker']]:10} {r['rps']:9,.0f} "
                        f"req/s  p50 {fmt_ms(r['p50_us'])}  p99 {fmt_ms(r['p99_us'])}  {r['cpu_us']:5.0f} us CPU/req"
                        + (f"  NON-2XX {r['non2xx']}" if r["non2xx"] else ""))
    finally:
        procs.stop_all()

    distinct_rps = [r["rps"] for r in runs if r["scenario"] == "distinct" and r["worker"] == "ours"]
    meta = {
        "stamp": now.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "dirty": " with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "",
        "wrk": (subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split() or ["?", "?"])[1],
        "workerd": subprocess.run([str(workerd_binary()), "--version"], capture_output=True,
                                  text=True).stdout.strip().removeprefix("workerd "),
        "date": date,
        "flags": flags,
        "jose": json.loads((ROOT / "node_modules/jose/package.json").read_text())["version"],
        "reuse": statistics.median(distinct_rps) * args.seconds / args.tokens,
        "cpu": next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                     if l.startswith("model name")), "unknown CPU"),
        "wasm_raw": len(wasm_bytes),
        "wasm_gz": len(gzip.compress(wasm_bytes, compresslevel=9)),
        "upload": upload,
        "peer_raw": len(peer_bytes),
        "peer_gz": len(gzip.compress(peer_bytes, compresslevel=9)),
        "warmup_warnings": warmup_warnings,
        "wall": time.monotonic() - started,
    }
    text = report(args, runs, meta)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{now.strftime('%Y-%m-%dT%H-%M-%SZ')}.md"
    out.write_text(text)
    print(text)
    say(f"written to {out.relative_to(ROOT)}")
    return 1 if any(r["non2xx"] or r["socket_errors"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
