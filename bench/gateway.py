"""The latency the gateway hop adds: the same request sent straight to a local origin, and sent
through edge-auth in gateway mode (release bundle on bare workerd, never `wrangler dev`).

Usage: python3 bench/gateway.py [seconds-per-run] [rounds] [--only TEXT] [--assertion [--assertion-alg EdDSA]]
(./scripts/bench.sh --gateway ...)

--only TEXT measures the rows whose name holds TEXT (and the floor each is compared with), for a
quick look at one comparison while working on it.

--jose-timeout adds a second jose gateway that gives each origin fetch a 30 s timeout
(`AbortSignal.timeout`, what a user adding one would write; edge-auth's gateway has one by
default), driven on the same three routes right after the plain one, and prints edge-auth's
req/s over it too. For the account of the timer's cost only: the musts are judged against the
plain jose gateway.

--assertion adds a second gateway, the same but with ASSERTION_KEYS set (one EdDSA key, as
assertion-key makes by default, or ES256 with --assertion-alg), driven on the public, repeated-token and distinct-token rows beside the
rows without it, round by round; "with/without" is the median of the rounds' req/s ratios (the
issue's musts: repeated >= 0.9x, distinct >= 0.85x).

The origin is the dev issuer's echo origin (`edge-auth-dev-issuer origin`, HTTP/1.1 keep-alive,
a thread per connection). wrk keeps its 8 connections open in both set-ups; workerd keeps its own
to the origin. Two routes are measured through the gateway: a public one (no token looked at) and a
required one, with one valid token repeated (a warm key and the verified-token cache, the steady
state) and with 5,000 distinct tokens (every one a signature check). And an MCP rule: a
`tools/call` POST with one token repeated (the body read, parsed as JSON-RPC and its tool's scopes
checked before the hop), next to the pass-through sending the same POST (its "vs pass-through"
is against that row).
For scale, the same hop through a plain JavaScript pass-through worker that checks nothing
(`bench/peer/passthrough.js`) on the same workerd: most of the hop is workerd's own outbound fetch.
And the peer a Workers user would write instead: a jose gateway (`bench/peer/jose-gateway.js`:
createRemoteJWKSet + jwtVerify on protected paths, a plain fetch on public ones, the subject in a
header), on its own workerd, driven on the same three routes; "vs jose gateway" is each gateway
row's req/s over the jose gateway's on the same route, same rounds.
"""

import argparse
import signal
import subprocess
import sys
import time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import bench  # noqa: E402  (the benchmark's build, bundle and process helpers)

WORK = bench.WORK.parent / "bench-gateway"
ROUTES = '[{"path": "/public/*", "auth": "public"}, {"path": "/private/*"}, ' \
    '{"path": "/mcp", "methods": ["POST"], "resource": "RESOURCE", "scopes": ["mcp:tools"], ' \
    '"mcp": {"tools/call:delete_repo": ["repo:admin"]}}]'
# What an MCP client sends to call a tool (a few hundred bytes, as the SDK's calls are).
MCP_CALL = '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search_issues","arguments":' \
    '{"repository":"edge-auth/edge-auth","query":"is:open label:bug sort:updated","per_page":20}},' \
    '"_meta":{"progressToken":7}}'
MCP_FLOOR = "JavaScript pass-through, MCP tools/call POST"
# Distinct tokens for the required rule's cache-miss row: more than the token cache holds.
TOKENS = 5000
# The jose gateway's row for each gateway row it is compared with (the key is in the gateway row's name).
JOSE = {"public": "jose gateway, public path", "repeated": "jose gateway, one token repeated",
        "distinct": f"jose gateway, {TOKENS} distinct tokens"}


def jose_row(name):
    """The jose gateway row a gateway row is compared with, or None (the MCP row has none)."""
    if not name.startswith("gateway, ") or "MCP rule" in name:
        return None
    return next((row for key, row in JOSE.items() if key in name), None)


def floor_row(name):
    return MCP_FLOOR if "MCP rule" in name else "JavaScript pass-through (checks nothing)"


ASSERTED = "gateway with assertion, "
# The prefix of a row of the jose gateway with an origin timeout (--jose-timeout).
TIMED = "with a 30 s origin timeout: "


def plain_row(name):
    """The row an assertion row is compared with: the same route through the gateway without keys."""
    return "gateway, " + name[len(ASSERTED):] if name.startswith(ASSERTED) else None


def assertion_keys(alg):
    """A fresh ASSERTION_KEYS value, as `edge-auth-dev-issuer assertion-key` prints it."""
    line = bench.run([bench.ISSUER_BIN, "assertion-key", "--alg", alg, "--kid", "bench"],
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    return line[line.index("'[") + 1:line.rindex("]'") + 1]


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("seconds", nargs="?", type=int, default=10)
    parser.add_argument("rounds", nargs="?", type=int, default=3)
    parser.add_argument("--only", help="measure the rows whose name holds this text, and their floors")
    parser.add_argument("--assertion", action="store_true",
                        help="add the gateway rows with ASSERTION_KEYS set, beside the same rows without")
    parser.add_argument("--assertion-alg", choices=["EdDSA", "ES256"], default="EdDSA")
    parser.add_argument("--jose-timeout", action="store_true",
                        help="add a jose gateway with a 30 s origin timeout beside the plain one")
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
        resource = f"http://127.0.0.1:{gateway_port}/mcp"
        mcp_token = bench.run([bench.ISSUER_BIN, "mint", "--port", issuer_port, "--dir", key_dir, "--exp", 7200,
                               "--aud", resource, "--scope", "mcp:tools"], stdout=subprocess.PIPE, text=True).stdout.strip()
        bindings = {
            "AUTH0_DOMAIN": f"127.0.0.1:{issuer_port}",
            "AUTH0_AUDIENCE": f"{bench.AUDIENCE},{resource}",
            "ORIGIN_URL": f"http://127.0.0.1:{origin_port}",
            "ROUTES": ROUTES.replace("RESOURCE", resource),
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

        if args.assertion:
            asserted_port = bench.free_port()
            asserted_config = WORK / "gateway-assertion.capnp"
            asserted_bindings = dict(bindings, ASSERTION_KEYS=assertion_keys(args.assertion_alg),
                                     ASSERTION_ISSUER=f"http://127.0.0.1:{gateway_port}")
            bench.capnp_config(asserted_config, bench.modules_of(ours_dir, bench.main_stem()), asserted_bindings,
                               asserted_port, date, flags)
            asserted = procs.start([bench.workerd_binary(), "serve", asserted_config], WORK / "gateway-assertion.log")
            bench.wait_until_serving(asserted, asserted_port, "/public/x", WORK / "gateway-assertion.log")

        jose_dir = bench.bundle_peer(WORK, bench.ROOT / "bench" / "peer" / "jose-gateway.js", "jose-gateway")
        jose_port = bench.free_port()
        jose_config = WORK / "jose-gateway.capnp"
        issuer_url = f"http://127.0.0.1:{issuer_port}/"
        bench.capnp_config(jose_config, [("worker.js", "esModule", jose_dir / "worker.js")],
                           {"ISSUER": issuer_url, "JWKS_URL": f"{issuer_url}.well-known/jwks.json",
                            "AUTH0_AUDIENCE": bench.AUDIENCE, "ORIGIN_URL": f"http://127.0.0.1:{origin_port}"},
                           jose_port, date, flags)
        jose = procs.start([bench.workerd_binary(), "serve", jose_config], WORK / "jose-gateway.log")
        bench.wait_until_serving(jose, jose_port, "/public/x", WORK / "jose-gateway.log")
        if args.jose_timeout:
            timed_port = bench.free_port()
            timed_config = WORK / "jose-gateway-timeout.capnp"
            bench.capnp_config(timed_config, [("worker.js", "esModule", jose_dir / "worker.js")],
                               {"ISSUER": issuer_url, "JWKS_URL": f"{issuer_url}.well-known/jwks.json",
                                "AUTH0_AUDIENCE": bench.AUDIENCE, "ORIGIN_URL": f"http://127.0.0.1:{origin_port}",
                                "ORIGIN_TIMEOUT_SECONDS": "30"},
                               timed_port, date, flags)
            timed = procs.start([bench.workerd_binary(), "serve", timed_config], WORK / "jose-gateway-timeout.log")
            bench.wait_until_serving(timed, timed_port, "/public/x", WORK / "jose-gateway-timeout.log")

        distinct = WORK / "distinct.txt"
        distinct.write_text(bench.run([bench.ISSUER_BIN, "mint", "--port", issuer_port, "--dir", key_dir, "--exp", 7200,
                                       "--count", TOKENS], stdout=subprocess.PIPE, text=True).stdout)
        repeated = WORK / "repeated.txt"
        repeated.write_text(token + "\n")
        mcp_repeated = WORK / "mcp-token.txt"
        mcp_repeated.write_text(mcp_token + "\n")
        call = WORK / "mcp-call.json"
        call.write_text(MCP_CALL)

        def drive(proc, port, path, tokens=None, body=None):
            method = "POST" if body else "GET"
            return lambda s: bench.drive(proc, port, path, tokens, s, 1, 8, method=method, body=body)

        runs = {
            "origin, straight": drive(origin, origin_port, "/public/x"),
            "JavaScript pass-through (checks nothing)": drive(passthrough, passthrough_port, "/public/x"),
            JOSE["public"]: drive(jose, jose_port, "/public/x"),
            "gateway, public rule": drive(gateway, gateway_port, "/public/x"),
            JOSE["repeated"]: drive(jose, jose_port, "/private/x", repeated),
            "gateway, required rule, one token repeated": drive(gateway, gateway_port, "/private/x", repeated),
            JOSE["distinct"]: drive(jose, jose_port, "/private/x", distinct),
            f"gateway, required rule, {TOKENS} distinct tokens": drive(gateway, gateway_port, "/private/x", distinct),
        }
        if args.jose_timeout:
            timed_rows = {
                TIMED + JOSE["public"]: drive(timed, timed_port, "/public/x"),
                TIMED + JOSE["repeated"]: drive(timed, timed_port, "/private/x", repeated),
                TIMED + JOSE["distinct"]: drive(timed, timed_port, "/private/x", distinct),
            }
            ordered = {}
            for name, run in runs.items():
                ordered[name] = run
                if TIMED + name in timed_rows:
                    ordered[TIMED + name] = timed_rows[TIMED + name]
            runs = ordered
        if args.assertion:
            # Each right after the same row without keys: a pair runs back to back in every round.
            with_keys = {
                ASSERTED + "public rule": drive(asserted, asserted_port, "/public/x"),
                ASSERTED + "required rule, one token repeated": drive(asserted, asserted_port, "/private/x", repeated),
                ASSERTED + f"required rule, {TOKENS} distinct tokens":
                    drive(asserted, asserted_port, "/private/x", distinct),
            }
            ordered = {}
            for name, run in runs.items():
                ordered[name] = run
                ordered.update({k: v for k, v in with_keys.items() if plain_row(k) == name})
            runs = ordered
        runs |= {
            MCP_FLOOR: drive(passthrough, passthrough_port, "/mcp", repeated, call),
            "gateway, MCP rule, tools/call, one token repeated": drive(gateway, gateway_port, "/mcp", mcp_repeated, call),
        }
        if args.only:
            wanted = [name for name in runs if args.only.lower() in name.lower()]
            if not wanted:
                raise SystemExit(f"gateway bench: no row's name holds {args.only!r}")
            keep = {"origin, straight", *wanted, *map(floor_row, wanted), *filter(None, map(jose_row, wanted)),
                    *filter(None, map(plain_row, wanted)),
                    *(TIMED + row for row in filter(None, map(jose_row, wanted)))}
            runs = {name: run for name, run in runs.items() if name in keep}
        for run in runs.values():
            run(2)  # warm-up: keys fetched, tokens verified once, JIT warm
        results = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                r = run(args.seconds)
                if r["non2xx"] or r["socket_errors"]:
                    raise SystemExit(f"gateway bench: {name}: {r['non2xx']} non-2xx, {r['socket_errors']} socket errors")
                results[name].append(r)
                time.sleep(0.5)

        def med(name):
            return {k: median([r[k] for r in results[name]]) for k in ("p50_us", "p99_us", "rps", "cpu_us",
                                                                          "background_cores")}

        straight = med("origin, straight")
        lines = [
            f"gateway hop, {args.rounds} rounds of {args.seconds} s, wrk 1 thread 8 connections, medians:",
            "",
            "| path | req/s | vs pass-through | vs jose gateway | p50 | p99 | p50 added over the origin "
            "| p50 added over the pass-through | workerd CPU/req | other cores |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name in runs:
            m = med(name)
            is_origin = name == "origin, straight"
            floor = None if is_origin else med(floor_row(name))
            jose_name = jose_row(name)
            versus_jose = f"{m['rps'] / med(jose_name)['rps']:.2f}x" if jose_name in results else "-"
            lines.append(
                f"| {name} | {m['rps']:,.0f} | " + ("-" if is_origin else f"{m['rps'] / floor['rps']:.2f}x")
                + f" | {versus_jose} | {m['p50_us'] / 1000:.2f} ms | {m['p99_us'] / 1000:.2f} ms | "
                + ("-" if is_origin else f"{(m['p50_us'] - straight['p50_us']) / 1000:+.2f} ms")
                + " | " + ("-" if is_origin or not name.startswith("gateway")
                           else f"{(m['p50_us'] - floor['p50_us']) / 1000:+.2f} ms")
                + " | " + ("- (not a worker)" if is_origin else f"{m['cpu_us']:.0f} us")
                + f" | {m['background_cores']:.2f} |")
        versus_timed = [(name, TIMED + jose_row(name)) for name in runs
                         if jose_row(name) and TIMED + jose_row(name) in results]
        if versus_timed:
            lines += ["", "the gateway's req/s over the jose gateway's with a 30 s origin timeout (AbortSignal.timeout, "
                      "as the gateway has one), same rounds:", ""]
            for name, timed_name in versus_timed:
                lines.append(f"- {name}: {med(name)['rps'] / med(timed_name)['rps']:.2f}x "
                             f"({med(name)['cpu_us']:.0f} against {med(timed_name)['cpu_us']:.0f} us CPU/req)")
        paired = [name for name in runs if plain_row(name) in results]
        if paired:
            lines += ["", f"with ASSERTION_KEYS ({args.assertion_alg}) / without, req/s, median of the rounds' ratios "
                      "(CPU/req: the difference of the medians):", ""]
            for name in paired:
                plain = plain_row(name)
                ratios = [a["rps"] / b["rps"] for a, b in zip(results[name], results[plain])]
                extra_cpu = med(name)["cpu_us"] - med(plain)["cpu_us"]
                lines.append(f"- {name[len(ASSERTED):]}: {median(ratios):.2f}x "
                             f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)}), {extra_cpu:+.0f} us CPU/req")
        lines += ["", "req/s vs pass-through is the gateway's req/s over the JavaScript pass-through's, same rounds. "
                  "CPU/req is the workerd process's utime + stime over the run, over requests completed. \"other "
                  "cores\": CPU used meanwhile by anything but wrk and the process measured (above ~0.15, compare "
                  "with care)."]
        print("\n".join(lines))
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()
