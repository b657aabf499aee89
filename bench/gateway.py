"""The latency the gateway hop adds: the same request sent straight to a local origin, and sent
through edge-auth in gateway mode (release bundle on bare workerd, never `wrangler dev`).

Usage: python3 bench/gateway.py [seconds-per-run] [rounds]   (./scripts/bench.sh --gateway does this)

The origin is the dev issuer's echo origin (`edge-auth-dev-issuer origin`, HTTP/1.1 keep-alive,
a thread per connection). wrk keeps its 8 connections open in both set-ups; workerd keeps its own
to the origin. Two routes are measured through the gateway: a public one (no token looked at) and a
required one with one valid token (so a warm key and the verified-token cache, the steady state).
For scale, the same hop through a plain JavaScript pass-through worker that checks nothing
(`bench/peer/passthrough.js`) on the same workerd: most of the hop is workerd's own outbound fetch.
"""

import argparse
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import bench  # noqa: E402  (the benchmark's build, bundle and process helpers)

WORK = bench.WORK.parent / "bench-gateway"
ROUTES = '[{"path": "/public/*", "auth": "public"}, {"path": "/private/*"}]'


def wrk(url, seconds, header=None):
    cmd = ["wrk", "-t1", "-c8", f"-d{seconds}s", "--latency"]
    if header:
        cmd += ["-H", header]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise SystemExit(f"gateway bench: wrk failed:\n{out.stdout}\n{out.stderr}")
    text = out.stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non2xx:
        raise SystemExit(f"gateway bench: {non2xx.group(1)} non-2xx answers from {url}:\n{text}")

    def percentile(p):
        value, unit = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    return {"p50": percentile(50), "p99": percentile(99), "rps": rps}


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("seconds", nargs="?", type=int, default=10)
    parser.add_argument("rounds", nargs="?", type=int, default=3)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    date, flags = bench.compatibility()
    ours_dir, _ = bench.build_worker(WORK)
    procs = bench.Processes()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        issuer_port, origin_port, gateway_port = bench.free_port(), bench.free_port(), bench.free_port()
        key_dir = WORK / "issuer"
        issuer = procs.start([bench.ISSUER_BIN, "serve", "--port", issuer_port, "--dir", key_dir], WORK / "issuer.log")
        bench.wait_until_serving(issuer, issuer_port, "/.well-known/jwks.json", WORK / "issuer.log")
        origin = procs.start([bench.ISSUER_BIN, "origin", "--port", origin_port], WORK / "origin.log")
        bench.wait_until_serving(origin, origin_port, "/public/x", WORK / "origin.log")
        token = bench.run([bench.ISSUER_BIN, "mint", "--port", issuer_port, "--dir", key_dir, "--exp", 7200],
                          stdout=subprocess.PIPE, text=True).stdout.strip()
        config = WORK / "gateway.capnp"
        bindings = {
            "AUTH0_DOMAIN": f"127.0.0.1:{issuer_port}",
            "AUTH0_AUDIENCE": bench.AUDIENCE,
            "ORIGIN_URL": f"http://127.0.0.1:{origin_port}",
            "ROUTES": ROUTES,
        }
        bench.capnp_config(config, bench.modules_of(ours_dir, bench.main_stem()), bindings, gateway_port, date, flags)
        gateway = procs.start([bench.workerd_binary(), "serve", config], WORK / "gateway.log")
        bench.wait_until_serving(gateway, gateway_port, "/public/x", WORK / "gateway.log")
        passthrough_port = bench.free_port()
        passthrough_config = WORK / "passthrough.capnp"
        passthrough_js = bench.ROOT / "bench" / "peer" / "passthrough.js"
        bench.capnp_config(passthrough_config, [("passthrough.js", "esModule", passthrough_js)],
                           {"ORIGIN_URL": f"http://127.0.0.1:{origin_port}"}, passthrough_port, date, flags)
        passthrough = procs.start([bench.workerd_binary(), "serve", passthrough_config], WORK / "passthrough.log")
        bench.wait_until_serving(passthrough, passthrough_port, "/public/x", WORK / "passthrough.log")

        runs = {
            "origin, straight": lambda s: wrk(f"http://127.0.0.1:{origin_port}/public/x", s),
            "through a JavaScript pass-through (checks nothing)": lambda s: wrk(
                f"http://127.0.0.1:{passthrough_port}/public/x", s),
            "through the gateway, public rule": lambda s: wrk(f"http://127.0.0.1:{gateway_port}/public/x", s),
            "through the gateway, required rule": lambda s: wrk(
                f"http://127.0.0.1:{gateway_port}/private/x", s, f"Authorization: Bearer {token}"),
        }
        for run in runs.values():
            run(2)  # warm-up: keys fetched, token verified once, JIT warm
        results = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                results[name].append(run(args.seconds))
                time.sleep(0.5)
        straight = {k: median([r[k] for r in results["origin, straight"]]) for k in ("p50", "p99", "rps")}
        lines = [
            f"gateway hop, {args.rounds} rounds of {args.seconds} s, wrk 1 thread 8 connections, medians:",
            "",
            "| path | req/s | p50 | p99 | p50 added | p99 added |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, rows in results.items():
            m = {k: median([r[k] for r in rows]) for k in ("p50", "p99", "rps")}
            added = "" if name == "origin, straight" else \
                f"{m['p50'] - straight['p50']:+.2f} ms | {m['p99'] - straight['p99']:+.2f} ms"
            lines.append(f"| {name} | {m['rps']:,.0f} | {m['p50']:.2f} ms | {m['p99']:.2f} ms | "
                         + (added or "- | -") + " |")
        print("\n".join(lines))
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()
