#!/usr/bin/env python3
"""Soak: the release worker under sustained mixed traffic, in demo and gateway modes, while the
issuer rotates its signing key once.

Run through ./scripts/soak.sh [seconds] (default 600), which installs the tools first. This script:
  1. builds the release worker and the dev issuer and bundles the worker with
     `wrangler deploy --dry-run --outdir`, as bench/bench.py does (EDGE_AUTH_PREBUILT=1 reuses build/);
  2. makes two signing keys (two dev-issuer key dirs, kids soak-key-a and soak-key-b), reads each
     one's JWKS from `edge-auth-dev-issuer serve`, and serves the JWKS itself, on one loopback port
     per worker so that each worker's fetches are counted apart. Key A is published first; at a
     third of the run A and B, and the mix signs with B; at two thirds B alone, so tokens signed by
     A become invalid;
  3. mints every token up front (`mint --count`, with --exp, --aud, --scope, --kid);
  4. serves the worker twice with bare workerd (never `wrangler dev`): demo mode, and gateway mode
     in front of `edge-auth-dev-issuer origin` (an echo origin), with
     JWKS_MAX_AGE_SECONDS=10 and JWKS_COOLDOWN_SECONDS=5, so that background refreshes, unknown-kid
     refetches and the rotation all happen within the run;
  5. drives both at a fixed concurrency with an asyncio HTTP/1.1 keep-alive client (each answer
     is judged against the request that got it), samples each workerd's RSS every 10 s, and
     judges the counts.

The verdict. Exit status 1 when any of these is non-zero: 5xx answers, valid tokens refused,
invalid tokens admitted, answers neither expected nor explained, requests that got no answer; or
when a worker fetched its JWKS more often than its bound, or its RSS grew by more than
MEMORY_FACTOR between the end of the warm-up and the end of the run.

- Transitions. A key's publication or removal reaches a worker only through a fetch, and a worker
  fetches at most once per cooldown: when its keys pass max-age (a background refresh) or when a
  token names an unknown kid. So a worker may refuse a B-signed token for up to
  max-age + cooldown (15 s) after B is published, and may admit an A-signed one for as long after
  A is removed. Requests sent within those windows (counted from the moment the issuer changed)
  whose answer depends on it are tallied apart, "in transition", and the old answer or the new
  one is accepted there (200 or 401; 401 or 403 for an under-scoped token); never a 5xx, never
  2xx for a token that is invalid either way. The report says how long each worker actually
  kept giving the old answer.
- The fetch bound, per worker: floor(T / cooldown) + 2, T being the seconds from its workerd's
  start to the end of the load. Every issuer fetch (cold start, background refresh, unknown kid)
  is stamped against the cooldown before it starts, so fetches are at least a cooldown apart and
  at most floor(T / cooldown) + 1 of them fit in T; one more absorbs the isolate's clock, which
  only advances at I/O. A random-kid token arrives many times a second, so a worker that respects
  the cooldown sits just under the bound; one that does not goes far past it.
- Memory: VmRSS of each workerd process, sampled every 10 s from the end of the warm-up (at
  least 60 s, then until neither RSS grew by more than 5% in 10 s, at most 240 s: a fresh
  workerd climbs from ~60 MB to a plateau near 300 MB over its first 100,000-200,000 requests,
  whatever they are, and the start is taken on that plateau). The run
  fails when the end is above MEMORY_FACTOR (1.5) times the start; the report also gives the
  drift over the second half (end over the mid-run sample), which stays near 1 when flat.

Standard library only. Every loop is bounded (time and request count), every address is
127.0.0.1, and only the process groups started here are ever signalled.
"""

import argparse
import asyncio
import collections
import datetime
import http.server
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the build, bundle, workerd config and process helpers)
from bench import AUDIENCE, ISSUER_BIN, ROOT, Processes, say  # noqa: E402

bench.TAG = "soak"

WORK = ROOT / "target" / "soak"  # scratch: bundle, keys, configs, logs (git-ignored with target/)
RESULTS = ROOT / "bench" / "results"
JWKS_PATH = "/.well-known/jwks.json"
STATUS_PATH = "/.well-known/edge-auth/status"

# Short key timings, so that refreshes, unknown-kid refetches and the rotation happen within a run.
MAX_AGE = 10  # JWKS_MAX_AGE_SECONDS: keys older than this are refreshed in the background
COOLDOWN = 5  # JWKS_COOLDOWN_SECONDS: least time between two issuer fetches of one worker
WINDOW = MAX_AGE + COOLDOWN  # how long a worker may take to learn of a published or removed key
FETCH_SLACK = 2  # fetches allowed per worker beyond floor(T / cooldown); see the docstring
# End RSS over start RSS (after the warm-up) above which the run fails. On its plateau workerd's
# RSS still moves by +-10% with V8's collections and the allocator's arenas, so "flat" is a band,
# not equality. A leak of 200 bytes per request (~1,000,000 requests per worker in 10 minutes)
# would add ~200 MB to a ~300 MB plateau and land outside it.
MEMORY_FACTOR = 1.5
SAMPLE_EVERY = 10  # seconds between RSS samples and progress lines
SETTLED = 1.05  # the warm-up ends once no workerd's RSS grew by more than 5% over SAMPLE_EVERY
REQUEST_TIMEOUT = 30  # seconds for one answer; past it the request counts as unanswered

KIDS = {"A": "soak-key-a", "B": "soak-key-b"}
SUBJECTS = {"A": "soak|key-a", "B": "soak|key-b"}
MODES = ["demo", "gateway"]
PATHS = {
    "demo": {"public": "/api/public", "private": "/api/private", "scoped": "/api/private-scoped"},
    "gateway": {"public": "/public/ping", "private": "/private/orders/{n}", "scoped": "/scoped/messages"},
}
# Gateway rules: a public one, a required one, a scoped one; everything else is denied.
ROUTES = [
    {"path": "/public/*", "auth": "public"},
    {"path": "/private/*", "methods": ["GET"]},
    {"path": "/scoped/*", "methods": ["GET"], "scopes": ["read:messages"]},
]

# The fixed mix: (category, route, weight out of 20). "Current key" is A before the first third,
# B after it.
MIX = [
    ("public", "public", 2),  # no token
    ("valid", "private", 5),  # valid, current key
    ("valid_scoped", "scoped", 2),  # valid with read:messages, current key
    ("old_key", "private", 2),  # valid, signed by A: valid until A is removed, invalid after
    ("expired", "private", 2),  # exp an hour ago, current key
    ("wrong_aud", "private", 2),  # aud https://another.api, current key
    ("bad_sig", "private", 2),  # a valid token (current key) with one signature character changed
    ("random_kid", "private", 1),  # a kid nobody publishes, signed by A
    ("under_scoped", "scoped", 2),  # valid but without read:messages, current key
]
ROUTE_OF = {name: route for name, route, _ in MIX}
# old_key requests are tallied as retired_key from A's removal on, where they must be refused.
CATEGORIES = [name for name, _, _ in MIX] + ["retired_key"]
HOT = 200  # half the picks of a valid category come from its first HOT tokens (token-cache hits)


# ---------------------------------------------------------------- the issuer


class RotatingIssuer:
    """The JWKS of whichever keys are published now, on one loopback port per worker, counting
    each worker's fetches (and any other request, which nothing should make)."""

    def __init__(self, jwks_by_key, names):
        self.jwks_by_key = jwks_by_key
        self.published = ("A",)
        self.fetches = {name: [] for name in names}  # (monotonic time, kids served)
        self.stray = {name: [] for name in names}  # requests for anything but the JWKS
        self.lock = threading.Lock()
        self.servers = {}
        self.threads = []

    def publish(self, *keys):
        with self.lock:
            self.published = keys

    def body(self):
        with self.lock:
            keys = self.published
        return keys, json.dumps({"keys": [k for key in keys for k in self.jwks_by_key[key]["keys"]]}).encode()

    def start(self, name):
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.split("?")[0] != JWKS_PATH:
                    with issuer.lock:
                        issuer.stray[name].append((time.monotonic(), self.command, self.path[:200]))
                    self.send_error(404)
                    return
                keys, body = issuer.body()
                with issuer.lock:
                    issuer.fetches[name].append((time.monotonic(), keys))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        thread.start()
        self.servers[name] = server
        self.threads.append(thread)
        return server.server_address[1]

    def stop(self):
        for server in self.servers.values():
            server.shutdown()
            server.server_close()
        self.servers = {}


def jwks_of(procs, key_dir, kid):
    """The public JWKS of one key dir, as `edge-auth-dev-issuer serve` publishes it (it makes the
    key on first use)."""
    port = bench.free_port()
    log = WORK / f"serve-{kid}.log"
    proc = procs.start([ISSUER_BIN, "serve", "--port", port, "--dir", key_dir, "--kid", kid], log)
    try:
        bench.wait_until_serving(proc, port, JWKS_PATH, log)
        status, _, body = bench.get(port, JWKS_PATH)
        if status != 200 or [k.get("kid") for k in body.get("keys", [])] != [kid]:
            raise SystemExit(f"soak: unexpected JWKS from the dev issuer for {kid}: {status} {body}")
        return body
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the group Processes.start created for it
        proc.wait(timeout=10)


# ---------------------------------------------------------------- tokens


def flip_signature(token):
    """The same token with one character in the middle of its signature changed: still
    well-formed, the right length, and signed by nobody."""
    head, payload, sig = token.split(".")
    i = len(sig) // 2
    return f"{head}.{payload}.{sig[:i]}{'A' if sig[i] != 'A' else 'B'}{sig[i + 1:]}"


def mint_tokens(key_dirs, issuer, lifetime):
    def mint(key, count, *, kid=None, exp=lifetime, aud=None, scope=None):
        cmd = [ISSUER_BIN, "mint", "--dir", key_dirs[key], "--kid", kid or KIDS[key], "--iss", issuer,
               "--sub", SUBJECTS[key], "--exp", exp, "--count", count]
        if aud:
            cmd += ["--aud", aud]
        if scope:
            cmd += ["--scope", scope]
        out = subprocess.run([str(c) for c in cmd], cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
        tokens = out.stdout.split()
        if len(tokens) != count or len(set(tokens)) != count:
            raise SystemExit(f"soak: asked for {count} distinct tokens, got {len(set(tokens))}")
        return tokens

    pools = {}
    for key in ("A", "B"):
        say(f"minting tokens signed by key {key} ({KIDS[key]})")
        valid = mint(key, 1500)
        pools[key] = {
            # More distinct valid tokens than the worker's 1,024-entry token cache holds: the hot
            # ones mostly hit it, the rest mostly miss.
            "valid": valid,
            "valid_scoped": mint(key, 300, scope="openid read:messages"),
            "expired": mint(key, 200, exp=-3600),
            "wrong_aud": mint(key, 200, aud="https://another.api"),
            # From the hot valid tokens, which sit in the token cache: a changed signature must
            # never hit it.
            "bad_sig": [flip_signature(t) for t in valid[:300]],
            "under_scoped": mint(key, 300, scope="openid profile"),
        }
    say("minting random-kid tokens (signed by key A)")
    rng = random.Random(9)
    pools["random_kid"] = [t for _ in range(32) for t in mint("A", 8, kid=f"rand-{rng.getrandbits(48):012x}")]
    return pools


# ---------------------------------------------------------------- the plan: what each request sends and expects


class Expect:
    __slots__ = ("valid", "ok", "transition", "stale", "subject", "scoped")

    def __init__(self, valid, ok, transition=False, subject=None, scoped=False, stale=None):
        self.valid = valid  # True: must be admitted; False: must be refused; None: either (transition)
        self.ok = ok  # the statuses that are right
        self.transition = transition
        self.stale = stale  # in a transition: the answer of a worker that has not yet learnt of it
        self.subject = subject  # for an admitted gateway request: the X-Auth-Subject the origin must see
        self.scoped = scoped


class Plan:
    """Which token each request carries and what it must get, by the time it is sent (seconds
    since the measured run began; negative during the warm-up)."""

    def __init__(self, pools, seconds):
        self.pools = pools
        self.rotate_at = seconds / 3  # A and B published; the mix signs with B
        self.retire_at = 2 * seconds / 3  # B alone: A-signed tokens are invalid
        # Ends of the transition windows; moved to the actual publication times + WINDOW when the
        # issuer changes (a few ms after the planned times).
        self.rotate_until = self.rotate_at + WINDOW
        self.retire_until = self.retire_at + WINDOW
        cycle = [name for name, _, weight in MIX for _ in range(weight)]
        random.Random(4).shuffle(cycle)  # a fixed interleaving
        self.cycle = cycle
        self.slots = {mode: 0 for mode in MODES}
        self.picks = {(mode, c): 0 for mode in MODES for c in CATEGORIES}

    def next(self, mode, t):
        """(category, route, token, Expect) for the next request to `mode`, sent at time t."""
        category = self.cycle[self.slots[mode] % len(self.cycle)]
        self.slots[mode] += 1
        n = self.picks[mode, category]
        self.picks[mode, category] = n + 1
        key = "A" if t < self.rotate_at else "B"
        learning_b = key == "B" and t < self.rotate_until
        route = ROUTE_OF[category]

        if category == "public":
            return category, route, None, Expect(True, {200})
        if category == "random_kid":
            pool = self.pools["random_kid"]
            return category, route, pool[n % len(pool)], Expect(False, {401})
        if category == "old_key":
            token = self.pick_valid(self.pools["A"]["valid"], n)
            if t < self.retire_at:
                return category, route, token, Expect(True, {200}, subject=SUBJECTS["A"])
            if t < self.retire_until:
                return "retired_key", route, token, Expect(None, {200, 401}, True, SUBJECTS["A"], stale=200)
            return "retired_key", route, token, Expect(False, {401})

        pool = self.pools[key][category]
        if category in ("valid", "valid_scoped"):
            token = self.pick_valid(pool, n) if category == "valid" else pool[n % len(pool)]
            scoped = category == "valid_scoped"
            if learning_b:
                return category, route, token, Expect(None, {200, 401}, True, SUBJECTS[key], scoped, stale=401)
            return category, route, token, Expect(True, {200}, subject=SUBJECTS[key], scoped=scoped)
        token = pool[n % len(pool)]
        if category == "under_scoped":
            # An unknown kid (B while the worker has not learnt it) is refused before the scopes.
            if learning_b:
                return category, route, token, Expect(False, {401, 403}, True, stale=401)
            return category, route, token, Expect(False, {403})
        return category, route, token, Expect(False, {401})  # expired, wrong_aud, bad_sig

    @staticmethod
    def pick_valid(pool, n):
        return pool[(n // 2) % HOT] if n % 2 == 0 else pool[(n // 2) % len(pool)]


# ---------------------------------------------------------------- tallies


class Tally:
    def __init__(self):
        self.requests = 0
        self.per = {(m, c): {"requests": 0, "status": collections.Counter(), "transition": collections.Counter()}
                    for m in MODES for c in CATEGORIES}
        self.failures = collections.Counter()  # 5xx, valid_refused, invalid_admitted, unexpected, no_answer
        self.examples = collections.defaultdict(list)  # failure kind -> first few (t, mode, category, what)
        self.retries = 0
        # In a transition, answers given as if the key change had not happened: (mode, category) ->
        # [count, time of the last one]
        self.stale = collections.defaultdict(lambda: [0, None])

    def fail(self, kind, t, mode, category, what):
        self.failures[kind] += 1
        if len(self.examples[kind]) < 10:
            self.examples[kind].append((t, mode, category, what))

    def record(self, mode, category, t, expect, status, headers, body):
        self.requests += 1
        row = self.per[mode, category]
        row["requests"] += 1
        (row["transition"] if expect.transition else row["status"])[status] += 1
        if expect.transition and status == expect.stale:
            stale = self.stale[mode, category]
            stale[0] += 1
            stale[1] = t if stale[1] is None else max(stale[1], t)
        what = f"{status} {body[:160].decode('utf-8', 'replace')}"
        if status >= 500:
            self.fail("5xx", t, mode, category, what)
            if expect.valid:
                self.fail("valid_refused", t, mode, category, what)
            return
        if status in expect.ok:
            if mode == "gateway" and 200 <= status < 300 and expect.subject:
                problem = identity_problem(body, expect)
                if problem:
                    self.fail("unexpected", t, mode, category, f"{status}, but {problem}")
            return
        if expect.valid:
            self.fail("valid_refused", t, mode, category, what)
        elif expect.valid is False and 200 <= status < 300:
            self.fail("invalid_admitted", t, mode, category, what)
        else:
            self.fail("unexpected", t, mode, category, f"{what} (expected {sorted(expect.ok)})")

    def no_answer(self, mode, category, t, error):
        self.requests += 1
        self.per[mode, category]["requests"] += 1
        self.per[mode, category]["status"]["none"] += 1
        self.fail("no_answer", t, mode, category, error)


def identity_problem(body, expect):
    """What is wrong with what the echo origin received for an admitted request, if anything."""
    try:
        echo = json.loads(body)
        headers = {}
        for name, value in echo["headers"]:
            headers.setdefault(name, value)
    except (ValueError, KeyError, TypeError):
        return "the origin's echo is not JSON"
    if headers.get("x-auth-subject") != expect.subject:
        return f"the origin saw X-Auth-Subject {headers.get('x-auth-subject')!r}, not {expect.subject!r}"
    if expect.scoped and "read:messages" not in headers.get("x-auth-scopes", "").split():
        return f"the origin saw X-Auth-Scopes {headers.get('x-auth-scopes')!r}"
    if "authorization" in headers:
        return "the origin received the Authorization header"
    return None


# ---------------------------------------------------------------- the client


class Connection:
    """One HTTP/1.1 keep-alive connection to 127.0.0.1:port, one request at a time."""

    def __init__(self, port, tally):
        self.port = port
        self.tally = tally
        self.reader = self.writer = None

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def get(self, path, token):
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n{auth}\r\n".encode()
        for _ in range(2):
            fresh = self.writer is None
            if fresh:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                self.writer.write(request)
                await self.writer.drain()
                status_line = await self.reader.readline()
            except ConnectionError:
                status_line = b""
            if status_line:
                break
            self.close()
            if fresh:
                raise ConnectionError("the connection closed without an answer")
            # The server closed an idle keep-alive connection: send once more on a new one.
            self.tally.retries += 1
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ConnectionError(f"not an HTTP status line: {status_line[:80]!r}")
        status = int(parts[1])
        headers = {}
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readline()).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while (await self.reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            body = b"".join(chunks)
        else:
            body = await self.reader.read()
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, body


async def drive(ports, plan, tally, t0, until, connections, budget, stop):
    """`connections` keep-alive connections per worker, each sending its next request as soon as
    the last is answered, until `until` (monotonic), `stop`, or the budget of requests
    (budget["left"], shared by the warm-up and the run) is spent."""

    async def one(mode, port):
        conn = Connection(port, tally)
        try:
            while not stop.is_set() and time.monotonic() < until and budget["left"] > 0:
                budget["left"] -= 1
                t = time.monotonic() - t0
                category, route, token, expect = plan.next(mode, t)
                path = PATHS[mode][route].format(n=budget["left"] % 1000)
                try:
                    status, headers, body = await asyncio.wait_for(conn.get(path, token), REQUEST_TIMEOUT)
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
                    conn.close()
                    tally.no_answer(mode, category, t, f"{type(e).__name__}: {e}")
                    await asyncio.sleep(0.05)  # a worker that is down is not hammered
                    continue
                tally.record(mode, category, t, expect, status, headers, body)
        finally:
            conn.close()

    await asyncio.gather(*(one(mode, ports[mode]) for mode in MODES for _ in range(connections)))


def rss_kb(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# ---------------------------------------------------------------- the run


async def soak(args, plan, issuer, ports, servers, tally):
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    # The warm-up: the phase-1 mix, not counted (a failure in it is still reported). It lets
    # workerd's RSS leave its start-up size behind: from ~60 MB, V8 and the allocator grow to a
    # plateau of ~300 MB within the first 100,000-200,000 requests, even on /api/public alone, and
    # "start" is meant to measure that plateau, not the climb to it. So it lasts --warmup seconds
    # and then until neither workerd's RSS grew by more than SETTLED over the last SAMPLE_EVERY
    # seconds (a busy machine serves fewer requests per second), --warmup-max seconds at most.
    warm = Tally()
    budget = {"left": args.max_requests}
    began = time.monotonic()
    settled = asyncio.Event()

    async def settle():
        previous = None
        while True:
            await asyncio.sleep(SAMPLE_EVERY)
            rss = {m: rss_kb(servers[m].pid) for m in MODES}
            elapsed = time.monotonic() - began
            flat = previous is not None and all(rss[m] <= SETTLED * previous[m] for m in MODES)
            say(f"warm-up {elapsed:5.1f} s: {warm.requests} requests, rss MB demo {rss['demo'] / 1024:.1f} "
                f"gateway {rss['gateway'] / 1024:.1f}")
            if (elapsed >= args.warmup and flat) or elapsed >= args.warmup_max:
                settled.set()
                return
            previous = rss

    say(f"warming up: {args.warmup} s, then until workerd's RSS settles ({args.warmup_max} s at most)")
    settler = asyncio.get_running_loop().create_task(settle())
    # Warm-up requests are sent at negative times of the plan: key A only.
    far = began + args.warmup_max + 3600
    await drive(ports, plan, warm, far, far, args.connections, budget, settled)
    await settler
    warmed = time.monotonic() - began
    plan.slots = {mode: 0 for mode in MODES}

    samples = []  # (t, rss kB per mode, requests so far, fetches so far)

    def sample():
        t = time.monotonic() - t0
        samples.append((t, {m: rss_kb(servers[m].pid) for m in MODES}, tally.requests,
                        sum(len(f) for f in issuer.fetches.values())))
        return samples[-1]

    t0 = time.monotonic()
    sample()
    say(f"soaking for {args.seconds} s: {args.connections} connections per worker; key A published, B at "
        f"{plan.rotate_at:.0f} s, A removed at {plan.retire_at:.0f} s")

    async def rotate():
        await asyncio.sleep(max(t0 + plan.rotate_at - time.monotonic(), 0))
        issuer.publish("A", "B")
        at = time.monotonic() - t0
        plan.rotate_until = at + WINDOW
        say(f"{at:6.1f} s: key B published beside A; B-signed tokens from now on")
        await asyncio.sleep(max(t0 + plan.retire_at - time.monotonic(), 0))
        issuer.publish("B")
        at = time.monotonic() - t0
        plan.retire_until = at + WINDOW
        say(f"{at:6.1f} s: key A removed; A-signed tokens are invalid from {plan.retire_until:.1f} s")

    async def monitor():
        last = (0.0, 0)
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)
                return
            except asyncio.TimeoutError:
                pass
            t, rss, requests, fetches = sample()
            rate = (requests - last[1]) / max(t - last[0], 1e-9)
            last = (t, requests)
            bad = " ".join(f"{k}={v}" for k, v in sorted(tally.failures.items()) if v)
            say(f"{t:6.1f} s: {requests} requests ({rate:,.0f}/s), issuer fetches {fetches}, "
                f"rss MB demo {rss['demo'] / 1024:.1f} gateway {rss['gateway'] / 1024:.1f}"
                + (f"  FAILURES {bad}" if bad else ""))
            for mode in MODES:
                if servers[mode].poll() is not None:
                    say(f"the {mode} workerd exited with {servers[mode].returncode}")
                    stop.set()

    rotation = loop.create_task(rotate())
    watcher = loop.create_task(monitor())
    try:
        await drive(ports, plan, tally, t0, t0 + args.seconds, args.connections, budget, stop)
    finally:
        stop.set()
        rotation.cancel()
        await watcher
    ended = time.monotonic()
    sample()
    return warm, warmed, samples, ended - t0, ended


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("seconds", nargs="?", type=int, default=600, help="measured seconds (default 600)")
    parser.add_argument("--warmup", type=int, default=60,
                        help="least seconds of warm-up, not counted (default 60); it goes on until RSS settles")
    parser.add_argument("--warmup-max", type=int, default=240, help="most seconds of warm-up (default 240)")
    parser.add_argument("--connections", type=int, default=8,
                        help="keep-alive connections (requests in flight) per worker (default 8: 16 in all)")
    parser.add_argument("--max-requests", type=int, default=20_000_000,
                        help="a bound on the requests of the run, warm-up included (default 20000000)")
    args = parser.parse_args()
    if not (3 * WINDOW <= args.seconds <= 7200 and 1 <= args.warmup <= args.warmup_max <= 600 and 1 <= args.connections <= 64
            and 1 <= args.max_requests <= 100_000_000):
        parser.error(f"out of range: {3 * WINDOW}-7200 s (each third must hold a {WINDOW} s transition), "
                     "1 <= warm-up <= warm-up max <= 600 s, 1-64 connections per worker, 1-100000000 requests")

    started = time.monotonic()
    now = datetime.datetime.now(datetime.timezone.utc)
    WORK.mkdir(parents=True, exist_ok=True)
    date, flags = bench.compatibility()
    try:
        bundle, _upload = bench.build_worker(WORK)
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"soak: `{' '.join(map(str, e.cmd))}` failed (exit {e.returncode}); to soak the build/ "
                         "already there: EDGE_AUTH_PREBUILT=1 ./scripts/soak.sh")
    modules = bench.modules_of(bundle, bench.main_stem())
    workerd = bench.workerd_binary()

    procs = Processes()
    issuer = None

    def terminate(signum, _frame):
        say(f"stopped by signal {signum}; stopping what this run started")
        sys.exit(128 + signum)  # unwinds through `finally`, like Ctrl-C

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, terminate)
    try:
        # The soak's own keys, apart from the dev issuer's in .dev-issuer/ and the benchmark's.
        key_dirs = {key: WORK / f"key-{key.lower()}" for key in ("A", "B")}
        jwks = {key: jwks_of(procs, key_dirs[key], KIDS[key]) for key in ("A", "B")}

        issuer = RotatingIssuer(jwks, MODES)
        issuer_ports = {mode: issuer.start(mode) for mode in MODES}
        # Both workers trust one issuer identifier; each fetches the JWKS from a port of its own.
        domain = f"127.0.0.1:{issuer_ports['demo']}"
        issuer_id = f"http://{domain}/"
        lifetime = args.warmup_max + args.seconds + 3600  # valid tokens outlive the run by an hour
        pools = mint_tokens(key_dirs, issuer_id, lifetime)
        plan = Plan(pools, args.seconds)

        origin_port = bench.free_port()
        origin_log = WORK / "origin.log"
        origin = procs.start([ISSUER_BIN, "origin", "--port", origin_port], origin_log)

        ports = {mode: bench.free_port() for mode in MODES}
        common = {
            "AUTH0_DOMAIN": domain,
            "AUTH0_AUDIENCE": AUDIENCE,
            "JWKS_MAX_AGE_SECONDS": str(MAX_AGE),
            "JWKS_COOLDOWN_SECONDS": str(COOLDOWN),
            "STATUS_ENDPOINT": "true",
        }
        bindings = {
            "demo": dict(common, AUTH0_JWKS_URL=f"http://127.0.0.1:{issuer_ports['demo']}{JWKS_PATH}"),
            "gateway": dict(common, AUTH0_JWKS_URL=f"http://127.0.0.1:{issuer_ports['gateway']}{JWKS_PATH}",
                            ORIGIN_URL=f"http://127.0.0.1:{origin_port}", ROUTES=json.dumps(ROUTES)),
        }
        servers, started_at = {}, {}
        for mode in MODES:
            config = WORK / f"{mode}.capnp"
            bench.capnp_config(config, modules, bindings[mode], ports[mode], date, flags)
            started_at[mode] = time.monotonic()
            servers[mode] = procs.start([workerd, "serve", config], WORK / f"{mode}.log")
        bench.wait_until_serving(origin, origin_port, "/ready", origin_log)
        for mode in MODES:
            bench.wait_until_serving(servers[mode], ports[mode], PATHS[mode]["public"], WORK / f"{mode}.log")
        say(f"serving demo on 127.0.0.1:{ports['demo']}, gateway on 127.0.0.1:{ports['gateway']} in front of "
            f"the echo origin on 127.0.0.1:{origin_port}; JWKS for each on 127.0.0.1:{issuer_ports['demo']} and "
            f"127.0.0.1:{issuer_ports['gateway']}; JWKS_MAX_AGE_SECONDS={MAX_AGE}, JWKS_COOLDOWN_SECONDS={COOLDOWN}")

        tally = Tally()
        warm, warmed, samples, measured, ended = asyncio.run(soak(args, plan, issuer, ports, servers, tally))
        args.warmed = warmed

        held = {}
        for mode in MODES:
            try:
                held[mode] = bench.get(ports[mode], STATUS_PATH)[2]
            except OSError as e:
                held[mode] = f"no answer: {e}"
    finally:
        if issuer is not None:
            issuer.stop()
        procs.stop_all()

    events = {mode: log_events(WORK / f"{mode}.log") for mode in MODES}
    verdict = judge(args, tally, warm, samples, measured, issuer, started_at, ended, events, held, plan)
    text = report(args, now, tally, warm, samples, measured, issuer, started_at, ended, events, held, plan,
                  verdict, time.monotonic() - started)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"soak-{now.strftime('%Y-%m-%dT%H-%M-%SZ')}.md"
    out.write_text(text + "\n" + verdict["line"] + "\n")
    print(text, flush=True)
    say(f"written to {out.relative_to(ROOT)}; wall time {time.monotonic() - started:.0f} s")
    sys.stderr.flush()
    print(verdict["line"], flush=True)
    return 1 if verdict["problems"] else 0


def log_events(log):
    """How many of each JSON log event (`event` field) a workerd printed."""
    counts = collections.Counter()
    try:
        with open(log, errors="replace") as f:
            for line in f:
                if line.startswith("{") and '"event"' in line:
                    try:
                        counts[json.loads(line).get("event", "?")] += 1
                    except ValueError:
                        counts["unparsed"] += 1
    except OSError:
        pass
    return counts


def judge(args, tally, warm, samples, measured, issuer, started_at, ended, events, held, plan):
    problems = []
    for kind in ("5xx", "valid_refused", "invalid_admitted", "unexpected", "no_answer"):
        if tally.failures[kind]:
            problems.append(f"{kind}: {tally.failures[kind]}")
        if warm.failures[kind]:
            problems.append(f"warm-up {kind}: {warm.failures[kind]}")
    bounds, fetches = {}, {}
    for mode in MODES:
        alive = ended - started_at[mode]
        bounds[mode] = math.floor(alive / COOLDOWN) + FETCH_SLACK
        fetches[mode] = len(issuer.fetches[mode])
        if fetches[mode] > bounds[mode]:
            problems.append(f"{mode}: {fetches[mode]} issuer fetches in {alive:.0f} s, bound {bounds[mode]}")
        if issuer.stray[mode]:
            problems.append(f"{mode}: {len(issuer.stray[mode])} requests to the issuer for something other than "
                            f"the JWKS, first {issuer.stray[mode][0][1:]}")
    start, end = samples[0][1], samples[-1][1]
    for mode in MODES:
        if not start[mode] or end[mode] > MEMORY_FACTOR * start[mode]:
            problems.append(f"{mode}: RSS {start[mode] / 1024:.1f} MB -> {end[mode] / 1024:.1f} MB "
                            f"(more than x{MEMORY_FACTOR})")
    f = tally.failures
    line = (f"soak: {args.seconds} s, requests={tally.requests}, 5xx={f['5xx']}, valid_refused={f['valid_refused']}, "
            f"invalid_admitted={f['invalid_admitted']}, unexpected={f['unexpected']}, no_answer={f['no_answer']}, "
            f"issuer_fetches={sum(fetches.values())} (bound {sum(bounds.values())}), "
            f"rss_mb demo={start['demo'] / 1024:.1f}->{end['demo'] / 1024:.1f} "
            f"gateway={start['gateway'] / 1024:.1f}->{end['gateway'] / 1024:.1f}")
    return {"problems": problems, "line": line, "bounds": bounds, "fetches": fetches}


def report(args, now, tally, warm, samples, measured, issuer, started_at, ended, events, held, plan, verdict, wall):
    t0 = ended - measured
    lines = [
        f"# edge-auth soak, {now.strftime('%Y-%m-%d %H:%M:%S UTC')}",
        "",
        f"- code: `{bench.git('rev-parse', '--short', 'HEAD') or 'unknown'}`"
        + (" with uncommitted changes" if bench.git("status", "--porcelain", "--untracked-files=no") else ""),
        f"- run: {measured:.1f} s measured after {args.warmed:.0f} s of warm-up; {args.connections} keep-alive "
        f"connections per worker ({2 * args.connections} requests in flight); {tally.requests} requests "
        f"({tally.requests / measured:,.0f}/s); {tally.retries} resent after an idle keep-alive close",
        f"- workers: the release bundle on bare workerd, demo mode and gateway mode (echo origin; ROUTES "
        f"`{json.dumps(ROUTES)}`); JWKS_MAX_AGE_SECONDS={MAX_AGE}, JWKS_COOLDOWN_SECONDS={COOLDOWN}",
        f"- rotation: key A ({KIDS['A']}) published from the start; A and B ({KIDS['B']}) from "
        f"{plan.rotate_until - WINDOW:.1f} s (B-signed tokens from {plan.rotate_at:.1f} s, in transition until "
        f"{plan.rotate_until:.1f} s); B alone from {plan.retire_until - WINDOW:.1f} s (A-signed tokens in "
        f"transition until {plan.retire_until:.1f} s, invalid after)",
        f"- mix per 20 requests: " + ", ".join(f"{name} {weight}" for name, _, weight in MIX),
        "",
        "## Answers by category",
        "",
        "| mode | category | requests | answers | in transition |",
        "|---|---|---:|---|---|",
    ]

    def counts(counter):
        return ", ".join(f"{status}×{n}" for status, n in sorted(counter.items(), key=lambda kv: str(kv[0]))) or "-"

    for mode in MODES:
        for category in CATEGORIES:
            row = tally.per[mode, category]
            lines.append(f"| {mode} | {category} | {row['requests']} | {counts(row['status'])} "
                         f"| {counts(row['transition'])} |")
    lines += ["", "Answers in transition given as if the key change had not happened yet (401 to B-signed "
              "tokens after B's publication, 200 to A-signed ones after A's removal):", ""]
    for mode in MODES:
        for category in CATEGORIES:
            count, last = tally.stale[mode, category]
            if count:
                since = plan.rotate_until - WINDOW if category != "retired_key" else plan.retire_until - WINDOW
                lines.append(f"- {mode} {category}: {count}, the last sent {last - since:.2f} s after the change")
    if not any(tally.stale.values()):
        lines.append("- none")
    lines += ["", "## Failures", ""]
    f = tally.failures
    lines.append(f"5xx {f['5xx']}, valid refused {f['valid_refused']}, invalid admitted {f['invalid_admitted']}, "
                 f"unexpected {f['unexpected']}, no answer {f['no_answer']}; warm-up: "
                 + (", ".join(f"{k} {v}" for k, v in sorted(warm.failures.items()) if v) or "none")
                 + f" ({warm.requests} requests)")
    for source, which in (("", tally), ("warm-up ", warm)):
        for kind, examples in sorted(which.examples.items()):
            for t, mode, category, what in examples:
                lines.append(f"- {source}{kind} at {t:.1f} s, {mode} {category}: {what}")

    lines += ["", "## Issuer fetches", ""]
    for mode in MODES:
        times = [at - t0 for at, _ in issuer.fetches[mode]]
        gaps = [b - a for a, b in zip(times, times[1:])]
        after_b = next((t for t in times if t >= plan.rotate_until - WINDOW), None)
        after_a = next((t for t in times if t >= plan.retire_until - WINDOW), None)
        lines.append(
            f"- {mode}: {len(times)} fetches over {ended - started_at[mode]:.0f} s of workerd "
            f"(bound {verdict['bounds'][mode]} = floor(T / {COOLDOWN}) + {FETCH_SLACK}); shortest gap "
            + (f"{min(gaps):.2f} s" if gaps else "-")
            + (f"; first fetch after B's publication at {after_b:.1f} s" if after_b is not None else "")
            + (f"; first after A's removal at {after_a:.1f} s" if after_a is not None else "")
            + (f"; STRAY requests {issuer.stray[mode][:3]}" if issuer.stray[mode] else ""))
        lines.append(f"  log events: {dict(sorted(events[mode].items()))}")
        status = held[mode]
        try:
            memory = status["tiers"]["memory"]
            status = (f"kids in memory {memory['kids']}, {memory['age_seconds']} s old; last fetch attempt "
                      f"{status['last_fetch_attempt_seconds_ago']} s ago, last failure "
                      f"{status['last_fetch_failure_seconds_ago']}")
        except (KeyError, TypeError):
            status = str(status)[:400]
        lines.append(f"  status route at the end: {status}")

    lines += ["", "## Memory (workerd VmRSS, MB)", "", "| t (s) | demo | gateway | requests | issuer fetches |",
              "|---:|---:|---:|---:|---:|"]
    for t, rss, requests, fetches in samples:
        lines.append(f"| {t:.0f} | {rss['demo'] / 1024:.1f} | {rss['gateway'] / 1024:.1f} | {requests} | {fetches} |")
    middle = min(samples, key=lambda sample: abs(sample[0] - measured / 2))
    for mode in MODES:
        values = [rss[mode] / 1024 for _, rss, _, _ in samples]
        lines.append("")
        lines.append(f"{mode}: start {values[0]:.1f}, end {values[-1]:.1f}, min {min(values):.1f}, "
                     f"max {max(values):.1f}, end/start {values[-1] / max(values[0], 1e-9):.2f} "
                     f"(fails above {MEMORY_FACTOR}); second half: end/mid ({middle[0]:.0f} s) "
                     f"{values[-1] / max(middle[1][mode] / 1024, 1e-9):.2f}")
    lines += ["", "## Verdict", ""]
    lines += [f"- FAIL: {p}" for p in verdict["problems"]] or ["- pass"]
    lines += ["", f"Total wall time: {wall:.0f} s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # main's `finally` has stopped every process it started
        say("interrupted")
        sys.exit(130)
