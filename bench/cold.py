"""The cold path: a fresh workerd process per try, timed from its start to the first answer.

Usage: python3 bench/cold.py [tries]   (./scripts/bench.sh --cold does this; default 16 tries)

Each try starts one bare workerd serving one worker, then measures, on a new connection each:
  first public   from the process start to the first 200 on /api/public (the process, the script's
                 compile and instantiation, the first request);
  first private  the next request, /api/private with a valid token: what a new isolate does
                 before it can verify (configuration, the JWKS from the issuer or a shared tier,
                 the key import, the verification);
  second private the same token again, for scale (the warm path).
Workers, alternated within each try so that drift in the machine falls on all alike:
  ours       edge-auth, no shared tier: keys fetched from the issuer;
  ours, KV   edge-auth with a JWKS_KV namespace that already holds the issuer's keys (the
             production cold path: the keys are fetched once per key-set rotation, not per
             isolate). The issuer is stopped before these tries: a 200 proves no fetch was made.
             (bare workerd has no Cache API store; at the edge the Cache tier is read first.)
  jose peer  bench/peer/worker.js: jose's createRemoteJWKSet, fetched from the issuer.
  ours, eager  edge-auth as `ours`, in a workerd whose V8 compiles every wasm function when the
             module loads (--no-wasm-lazy-compilation) rather than on its first call. Not a
             setting a worker has (a deployed one runs with the runtime's flags): it measures how
             much of the first answers is V8 compiling the wasm functions a request runs.
Medians of the tries, and the ratios ours / peer (below 1: edge-auth is faster).
"""

import argparse
import gzip
import http.client
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the benchmark's build, bundle and process helpers)

WORK = bench.WORK.parent / "bench-cold"

# A KV namespace for workerd's kvNamespace binding: workerd sends GET and PUT to
# https://fake-host/<key, URL-encoded>?urlencoded=true. GETs answer from SEED (filled in per run);
# PUTs are printed, which is how the seed is taken from a warm worker's own write.
KV_SERVICE = """const SEED = %s;
const values = new Map(Object.entries(SEED));
export default {
  async fetch(request) {
    const url = new URL(request.url);
    const key = decodeURIComponent(url.pathname.slice(1));
    if (request.method === "GET") {
      const value = values.get(key);
      return value === undefined ? new Response(null, { status: 404 }) : new Response(value);
    }
    if (request.method === "PUT") {
      const value = await request.text();
      values.set(key, value);
      console.log(JSON.stringify({ kv_put: key, value }));
      return new Response(null);
    }
    return new Response(null, { status: 405 });
  },
};"""


def config(path, modules, bindings, port, date, flags, kv_seed=None, v8_flags=()):
    """bench.capnp_config, with a JWKS_KV namespace holding kv_seed's entries when it is a dict."""
    kv = None if kv_seed is None else KV_SERVICE % json.dumps(kv_seed)
    bench.capnp_config(path, modules, bindings, port, date, flags, kv=kv, v8_flags=v8_flags)


def status(port, path, token=None):
    """One GET on a new connection: the status, or None while nothing listens."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        response.read()
        return response.status
    except ConnectionRefusedError:
        return None
    finally:
        conn.close()


def one_try(procs, workerd, config_path, port, token, log):
    """(first public, first private, second private) in ms, from a fresh process."""
    started = time.perf_counter()
    proc = procs.start([workerd, "serve", config_path], log)
    try:
        deadline = started + 60
        while True:
            code = status(port, "/api/public")
            if code == 200:
                break
            if code is not None:
                raise SystemExit(f"bench: /api/public answered {code}; see {log}")
            if proc.poll() is not None or time.perf_counter() > deadline:
                raise SystemExit(f"bench: workerd did not serve; see {log}:\n" + log.read_text(errors="replace")[-2000:])
            time.sleep(0.001)
        public = time.perf_counter()
        if status(port, "/api/private", token) != 200:
            raise SystemExit(f"bench: the first /api/private was refused; see {log}")
        private = time.perf_counter()
        if status(port, "/api/private", token) != 200:
            raise SystemExit(f"bench: the second /api/private was refused; see {log}")
        again = time.perf_counter()
    finally:
        procs.stop(proc)
    return (public - started) * 1000, (private - public) * 1000, (again - private) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tries", nargs="?", type=int, default=16)
    args = parser.parse_args()
    if not 1 <= args.tries <= 100:
        parser.error("tries: 1 to 100")
    WORK.mkdir(parents=True, exist_ok=True)
    date, flags = bench.compatibility()
    ours_dir, peer_dir, _ = bench.build(WORK)
    wasm = sorted(p for p in ours_dir.iterdir() if p.suffix == ".wasm")
    workerd = bench.workerd_binary()
    procs = bench.Processes()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        issuer_port = bench.free_port()
        issuer_url = f"http://127.0.0.1:{issuer_port}/"
        key_dir = WORK / "issuer"
        issuer = procs.start([bench.ISSUER_BIN, "serve", "--port", issuer_port, "--dir", key_dir], WORK / "issuer.log")
        bench.wait_until_serving(issuer, issuer_port, "/.well-known/jwks.json", WORK / "issuer.log")
        token = bench.run([bench.ISSUER_BIN, "mint", "--port", issuer_port, "--dir", key_dir, "--exp", 7200],
                          stdout=subprocess.PIPE, text=True).stdout.strip()
        ours_bindings = {"AUTH0_DOMAIN": f"127.0.0.1:{issuer_port}", "AUTH0_AUDIENCE": bench.AUDIENCE}
        peer_bindings = {"ISSUER": issuer_url, "JWKS_URL": f"{issuer_url}.well-known/jwks.json",
                         "AUTH0_AUDIENCE": bench.AUDIENCE}
        ours_modules = bench.modules_of(ours_dir, bench.main_stem())
        peer_modules = [("worker.js", "esModule", peer_dir / "worker.js")]

        # The KV seed: what edge-auth itself writes after fetching the keys (so the bench follows
        # the stored format wherever it goes).
        port = bench.free_port()
        seed_config = WORK / "seed.capnp"
        config(seed_config, ours_modules, ours_bindings, port, date, flags, kv_seed={})
        seeder = procs.start([workerd, "serve", seed_config], WORK / "seed.log")
        bench.wait_until_serving(seeder, port, "/api/public", WORK / "seed.log")
        if status(port, "/api/private", token) != 200:
            raise SystemExit("bench: the seeding worker refused the token")
        seed = {}
        deadline = time.monotonic() + 10
        while not seed and time.monotonic() < deadline:
            for line in (WORK / "seed.log").read_text(errors="replace").splitlines():
                if line.startswith("{") and '"kv_put"' in line:
                    put = json.loads(line)
                    seed[put["kv_put"]] = put["value"]
            time.sleep(0.05)
        procs.stop(seeder)
        if not seed:
            raise SystemExit("bench: edge-auth wrote nothing to JWKS_KV after fetching the keys")

        eager = ["--no-wasm-lazy-compilation"]
        workers = [("ours", ours_modules, ours_bindings, None, ()), ("peer", peer_modules, peer_bindings, None, ()),
                   ("ours_eager", ours_modules, ours_bindings, None, eager),
                   ("ours_kv", ours_modules, ours_bindings, seed, ())]
        configs = {}
        for name, modules, bindings, kv_seed, v8_flags in workers:
            port = bench.free_port()
            configs[name] = (WORK / f"{name}.capnp", port)
            config(configs[name][0], modules, bindings, port, date, flags, kv_seed=kv_seed, v8_flags=v8_flags)

        times = {name: [] for name, *_ in workers}
        bench.say(f"{args.tries} tries of each: a fresh workerd, then /api/public, /api/private twice")
        for i in range(args.tries):
            for name in ("ours", "peer", "ours_eager"):
                path, port = configs[name]
                times[name].append(one_try(procs, workerd, path, port, token, WORK / f"{name}.log"))
        # Without the issuer, a 200 can only come from keys read out of KV.
        procs.stop(issuer)
        for i in range(args.tries):
            path, port = configs["ours_kv"]
            times["ours_kv"].append(one_try(procs, workerd, path, port, token, WORK / "ours_kv.log"))
    finally:
        procs.stop_all()

    def med(name, column):
        return statistics.median(t[column] for t in times[name])

    wasm_bytes = b"".join(p.read_bytes() for p in wasm)
    lines = [
        f"Cold path: {args.tries} tries each, a fresh workerd per try; medians in ms (lower is better).",
        f"wasm: {len(wasm_bytes):,} bytes, {len(gzip.compress(wasm_bytes, 9)):,} gzip; "
        f"jose peer bundle: {(peer_dir / 'worker.js').stat().st_size:,} bytes",
        "",
        "| | jose peer | edge-auth | ratio | edge-auth, keys in KV | ratio | edge-auth, eager compile* | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for column, label in enumerate(["first `/api/public` after start", "then first `/api/private`",
                                     "then second `/api/private`"]):
        peer, ours, kv, eager = (med(name, column) for name in ("peer", "ours", "ours_kv", "ours_eager"))
        lines.append(f"| {label} | {peer:.1f} | {ours:.1f} | {ours / peer:.2f}x | {kv:.1f} | {kv / peer:.2f}x "
                     f"| {eager:.1f} | {eager / peer:.2f}x |")
    lines += ["", "* V8 flag --no-wasm-lazy-compilation: the whole module compiled at load instead of each function "
              "on its first call. Not a worker's setting; it shows what lazy compilation costs each answer."]
    lines += ["", "Every try (public / private / private again, ms):"]
    for name in times:
        lines.append(f"- {name}: " + ", ".join("/".join(f"{v:.1f}" for v in t) for t in times[name]))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
