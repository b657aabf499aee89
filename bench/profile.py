"""Where a request's CPU goes: a V8 CPU profile of edge-auth on bare workerd under wrk load.

Usage: python3 bench/profile.py [--gateway [--assertion ES256|EdDSA]] [--token | --distinct | --mcp] [--seconds N] [PATH]
       (./scripts/bench.sh --profile ... does this)

The worker is the release build with the wasm's function names kept (wasm-opt --debuginfo, the
same code as shipped), so wasm functions show by name beside JavaScript and the runtime's own
work. workerd runs with its inspector on a loopback port; bench/profile.mjs samples every 50 us
while wrk drives PATH (default /api/public, or /public/x with --gateway, which puts a local echo
origin behind the worker). --token sends one valid token, repeated (the token cache's steady
state); --distinct sends 5,000 distinct tokens (a signature check each); --mcp (gateway) POSTs an
MCP tools/call through an mcp rule with one token repeated (bench/gateway.py's MCP row);
--assertion ALG (gateway) sets ASSERTION_KEYS, one key of that algorithm, so that every forward
carries a signed assertion. Prints each function's share of the samples by itself and with what it called, and
writes the profile to target/bench-profile/out.cpuprofile (Chrome DevTools opens it). Sampling
slows the worker down; compare shares, never its times with the benchmark's.
"""

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the benchmark's build, bundle and process helpers)
from gateway import MCP_CALL  # noqa: E402  (the gateway bench's MCP row sends the same call)

WORK = bench.WORK.parent / "bench-profile"

ROUTES = '[{"path": "/public/*", "auth": "public"}, {"path": "/private/*"}, ' \
    '{"path": "/mcp", "methods": ["POST"], "resource": "RESOURCE", "scopes": ["mcp:tools"], "mcp": {}}]'



def report(profile, top):
    nodes = {n["id"]: n for n in profile["nodes"]}
    parent = {child: n["id"] for n in profile["nodes"] for child in n.get("children", [])}
    samples = collections.Counter(profile["samples"])
    total = sum(samples.values())

    def name(node):
        frame = node["callFrame"]
        where = "wasm" if ".wasm" in frame.get("url", "") else ("js" if frame.get("url") else "")
        return f"{(frame['functionName'] or '(anonymous)')[:100]} {where}".rstrip()

    alone, within = collections.Counter(), collections.Counter()
    for node_id, count in samples.items():
        alone[name(nodes[node_id])] += count
        seen, at = set(), node_id
        while at is not None:
            label = name(nodes[at])
            if label not in seen:
                within[label] += count
                seen.add(label)
            at = parent.get(at)
    print(f"{total} samples; (idle) is the isolate waiting, (program) the runtime outside JavaScript")
    for title, counts in (("by itself", alone), ("with what it called", within)):
        print(f"\n| share | {title} |\n|---:|---|")
        for label, count in counts.most_common(top):
            print(f"| {100 * count / total:.1f}% | `{label}` |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?")
    parser.add_argument("--gateway", action="store_true", help="ROUTES in front of a local echo origin")
    parser.add_argument("--token", action="store_true", help="send one valid token, repeated")
    parser.add_argument("--distinct", action="store_true", help="send 5,000 distinct valid tokens")
    parser.add_argument("--mcp", action="store_true", help="(with --gateway) an MCP tools/call POST, one token")
    parser.add_argument("--assertion", choices=["ES256", "EdDSA"],
                        help="(with --gateway) ASSERTION_KEYS set, one key of this algorithm")
    parser.add_argument("--jose", action="store_true",
                        help="(with --gateway) profile the jose gateway (bench/peer/jose-gateway.js) instead")
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    if (args.mcp or args.assertion or args.jose) and not args.gateway:
        parser.error("--mcp, --assertion and --jose profile the gateway: add --gateway")
    if args.jose and (args.mcp or args.assertion):
        parser.error("the jose gateway has no MCP rule or assertion")
    token = args.token or args.distinct or args.mcp
    path = args.path or ("/mcp" if args.mcp else "/private/x" if args.gateway and token else "/public/x"
                         if args.gateway else "/api/private" if token else "/api/public")
    WORK.mkdir(parents=True, exist_ok=True)
    date, flags = bench.compatibility()
    # scripts/build.sh's own build, with the wasm's names kept (EDGE_AUTH_BUILD_NAMES), beside build/.
    named = WORK / "named"
    bench.run(["sh", "scripts/build.sh"], env=dict(os.environ, EDGE_AUTH_BUILD_NAMES=str(named)))
    bench.run(["cargo", "build", "--quiet", "--release", "-p", "edge-auth-dev-issuer"])
    modules = [("worker.mjs", "esModule", named / "worker.mjs"), ("glue_bg.wasm", "wasm", named / "glue_bg.wasm")]
    procs = bench.Processes()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        issuer_port = bench.free_port()
        key_dir = WORK / "issuer"
        issuer = procs.start([bench.ISSUER_BIN, "serve", "--port", issuer_port, "--dir", key_dir], WORK / "issuer.log")
        bench.wait_until_serving(issuer, issuer_port, "/.well-known/jwks.json", WORK / "issuer.log")
        port, inspector = bench.free_port(), bench.free_port()
        resource = f"http://127.0.0.1:{port}/mcp"
        bindings = {"AUTH0_DOMAIN": f"127.0.0.1:{issuer_port}", "AUTH0_AUDIENCE": f"{bench.AUDIENCE},{resource}"}
        if args.gateway:
            origin_port = bench.free_port()
            origin = procs.start([bench.ISSUER_BIN, "origin", "--port", origin_port], WORK / "origin.log")
            bench.wait_until_serving(origin, origin_port, "/public/x", WORK / "origin.log")
            bindings.update(ORIGIN_URL=f"http://127.0.0.1:{origin_port}", ROUTES=ROUTES.replace("RESOURCE", resource))
        if args.jose:
            jose = bench.bundle_peer(WORK, bench.ROOT / "bench" / "peer" / "jose-gateway.js", "jose-gateway")
            modules = [("worker.js", "esModule", jose / "worker.js")]
            issuer_url = f"http://127.0.0.1:{issuer_port}/"
            bindings = {"ISSUER": issuer_url, "JWKS_URL": f"{issuer_url}.well-known/jwks.json",
                        "AUTH0_AUDIENCE": bench.AUDIENCE, "ORIGIN_URL": bindings["ORIGIN_URL"]}
        if args.assertion:
            from gateway import assertion_keys  # noqa: E402  (the gateway bench makes its keys the same way)
            bindings.update(ASSERTION_KEYS=assertion_keys(args.assertion), ASSERTION_ISSUER=f"http://127.0.0.1:{port}")
        tokens, body = None, None
        if token:
            mint = [bench.ISSUER_BIN, "mint", "--port", issuer_port, "--dir", key_dir, "--exp", 7200]
            mint += ["--count", 5000] if args.distinct else ["--aud", resource, "--scope", "mcp:tools"] if args.mcp else []
            tokens = WORK / "tokens.txt"
            tokens.write_text(bench.run(mint, stdout=subprocess.PIPE, text=True).stdout)
        if args.mcp:
            body = WORK / "mcp-call.json"
            body.write_text(MCP_CALL)
        method = "POST" if body else "GET"
        config = WORK / "profile.capnp"
        bench.capnp_config(config, modules, bindings, port, date, flags)
        worker = procs.start([bench.workerd_binary(), "serve", config, f"--inspector-addr=127.0.0.1:{inspector}"],
                             WORK / "worker.log")
        bench.wait_until_serving(worker, port, "/api/public" if not args.gateway else "/public/x", WORK / "worker.log")
        bench.drive(worker, port, path, tokens, 2, 1, 8, method=method, body=body)  # warm: keys fetched, code tiered up
        out = WORK / "out.cpuprofile"
        out.unlink(missing_ok=True)
        sampler = subprocess.Popen([bench.ROOT / "node_modules" / ".bin" / "node", bench.ROOT / "bench" / "profile.mjs",
                                    str(inspector), str(args.seconds + 1), out])
        time.sleep(0.5)
        load = bench.drive(worker, port, path, tokens, args.seconds, 1, 8, method=method, body=body)
        if sampler.wait(timeout=60) != 0 or not out.exists():
            raise SystemExit("bench: the profiler got no profile")
    finally:
        procs.stop_all()
    print(f"{path}: {load['rps']:,.0f} req/s, {load['cpu_us']:.0f} us of workerd CPU per request while sampled\n")
    report(json.loads(out.read_text()), args.top)
    print(f"\nprofile: {out}")


if __name__ == "__main__":
    main()
