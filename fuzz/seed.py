#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/ (run by scripts/fuzz.sh).

Seeds come from the fixture of token_pipeline (fuzz/fixtures/pipeline.json), the signature
vectors (tests/vectors/signatures.json), the attack corpus (tests/vectors/attacks.json, when it
exists and parses), and a few hand-made cases below. Each seed is named by its content's hash,
so reseeding is idempotent and never duplicates what libFuzzer already keeps.
"""

import base64
import copy
import hashlib
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def load(relative):
    path = os.path.join(ROOT, relative)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f"seed: skipping {relative}: {e}", file=sys.stderr)
        return None


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Seeds:
    def __init__(self):
        self.by_target = {}

    def add(self, target, data):
        if isinstance(data, str):
            data = data.encode()
        self.by_target.setdefault(target, set()).add(data)

    def write(self):
        for target, seeds in sorted(self.by_target.items()):
            folder = os.path.join(CORPUS, target)
            os.makedirs(folder, exist_ok=True)
            for data in seeds:
                path = os.path.join(folder, "seed-" + hashlib.sha1(data).hexdigest())
                if not os.path.exists(path):
                    with open(path, "wb") as f:
                        f.write(data)
            print(f"seed: {target}: {len(seeds)} seeds")


# token_pipeline's selector byte: bit 0 gateway, bits 1-3 route, bits 4-5 method (0: GET).
DEMO_ROUTES = {"/api/public": 0, "/api/private": 1, "/api/private-scoped": 2}
GATEWAY_ROUTE_COUNT = 8
GATEWAY_OPTIONAL = 4


def demo(route):
    return bytes([route << 1])


def gateway(route):
    return bytes([1 | route << 1])


def token_seeds(seeds, fixture, signatures, attacks):
    for route in range(4):
        seeds.add("token_pipeline", demo(route))
    for route in range(GATEWAY_ROUTE_COUNT):
        seeds.add("token_pipeline", gateway(route))
    if fixture:
        for token in fixture["tokens"]:
            header = b"Bearer " + token["token"].encode()
            if token["valid"]:
                for route in range(4):
                    seeds.add("token_pipeline", demo(route) + header)
                for route in range(GATEWAY_ROUTE_COUNT):
                    seeds.add("token_pipeline", gateway(route) + header)
            else:
                seeds.add("token_pipeline", demo(1) + header)
                seeds.add("token_pipeline", gateway(GATEWAY_OPTIONAL) + header)
    if signatures:
        for vector in signatures["vectors"]:
            seeds.add("token_pipeline", demo(1) + b"Bearer " + vector["token"].encode())
    if attacks:
        for row in attacks["rows"]:
            values = [v for (n, v) in row["headers"] if n.lower() == "authorization"]
            if not values:
                continue
            # The runtime joins repeated headers with ", ".
            value = ", ".join(values).encode()
            if row["mode"] == "gateway":
                seeds.add("token_pipeline", gateway(GATEWAY_OPTIONAL) + value)
            else:
                seeds.add("token_pipeline", demo(DEMO_ROUTES.get(row["path"], 1)) + value)


def jwks_seeds(seeds, sets):
    for jwks in sets:
        seeds.add("jwks_parse", json.dumps(jwks))
        keys = [k for k in jwks["keys"] if k.get("kty") == "RSA"]
        for key in keys:
            seeds.add("jwks_parse", json.dumps({"keys": [key]}))
        if not keys:
            continue
        key = keys[0]

        def variant(**changes):
            k = copy.deepcopy(key)
            for name, value in changes.items():
                if value is None:
                    k.pop(name, None)
                else:
                    k[name] = value
            return k

        n = unb64(key["n"])
        variants = [
            variant(use="enc"),
            variant(alg="RS512"),
            variant(alg=None, use=None, kid=None),
            variant(e="AQ"),  # 1
            variant(e="Ag"),  # 2, even
            variant(e="AQAAAAE"),  # 2^32 + 1: 33 bits
            variant(e="AQAAAAAB"),  # 41 bits
            variant(n=b64(n[: len(n) // 2])),  # half the bits
            variant(n=b64(b"\0" + n)),  # a leading zero byte
            variant(n=key["n"] + "=="),  # padded
            variant(kty="EC"),
            variant(kid=17),
        ]
        seeds.add("jwks_parse", json.dumps({"keys": variants}))
        seeds.add("jwks_parse", json.dumps({"keys": [key, variant(e="AQ"), key]}))
        seeds.add("jwks_parse", json.dumps({"keys": [variant(kid=None), variant(kid=None)]}))
        for v in variants:
            seeds.add("jwks_parse", json.dumps({"keys": [v]}))
    for text in ['{"keys": []}', '{"keys": {}}', '{"keys": [null, 1, "x", {}]}', "{}", "[]", "null", ""]:
        seeds.add("jwks_parse", text)


README_ROUTES = [
    {"path": "/health", "auth": "public"},
    {"path": "/orders/:id", "methods": ["GET"], "scopes": ["read:orders"]},
    {"path": "/orders/:id", "methods": ["PUT", "DELETE"], "scopes": ["write:orders"], "any_scopes": ["admin", "owner"]},
    {"path": "/catalog/*", "auth": "optional"},
]
BAD_ROUTES = [
    "{}",
    "[]",
    "[1]",
    '[{"path": "relative"}]',
    '[{"path": "/a/*/b"}]',
    '[{"path": "/a*"}]',
    '[{"path": "/:"}]',
    '[{"path": "/:x-y"}]',
    '[{"path": "/a%2Fb"}]',
    '[{"path": "/a", "methods": []}]',
    '[{"path": "/a", "methods": ["G E T"]}]',
    '[{"path": "/a", "auth": "public", "scopes": ["x"]}]',
    '[{"path": "/a", "scopes": ["a b"]}]',
    '[{"path": "/a", "unknown": 1}]',
    '[{"path": "/a", "path": "/b"}]',
    '[{"path": "/", "methods": null}]',
    '[{"path": "/*"}]',
]


def route_seeds(seeds, attacks):
    sets = [README_ROUTES]
    paths = ["/", "/health", "/orders/1", "/orders/", "/catalog", "/catalog/", "/catalog/a/b", "/catalogx"]
    if attacks:
        sets.append(attacks["gateway_routes"])
        paths += sorted({row["path"] for row in attacks["rows"]})
    for rules in sets:
        text = json.dumps(rules)
        seeds.add("routes", text)
        probes = b"".join(b"\xff" + f"{m} {p}".encode() for p in paths for m in ("GET", "DELETE"))
        seeds.add("routes", text.encode() + probes)
        for rule in rules:
            seeds.add("routes", json.dumps([rule]))
    for text in BAD_ROUTES:
        seeds.add("routes", text)
    for path in paths:
        seeds.add("path_safety", path)
    for path in [
        "/a%2fb", "/a%2Fb", "/a%5cb", "/a%5Cb", "/a%2eb", "/a%2Eb", "/%252F", "/%", "/%2", "%2", "/%%2F", "/é%2F",
        "/caf%C3%A9", "/caf%C3", "/%C0%AF", "/%E0%80%AF", "/a%20b", "/a%3Fb", "/%61", "/%7e", "/%+1", "/a;b", "/a\\b",
    ]:
        seeds.add("path_safety", path)


def dpop_seeds(seeds):
    # Odd first byte: header and claims JSON, signed by the target's fixed key ("$JWK", $ATH).
    header = '{"typ":"dpop+jwt","alg":"ES256","jwk":"$JWK"}'
    claims = {"jti": "seed-1", "htm": "GET", "htu": "https://api.fuzz.test/api/private", "iat": 1767225600, "ath": "$ATH"}
    variants = [dict(claims), dict(claims, htu="https://API.fuzz.test:443/api/private?x=1"), dict(claims, iat=1767225600 - 300)]
    variants += [dict(claims, htm="POST"), {k: v for k, v in claims.items() if k != "jti"}, dict(claims, nonce="n")]
    for body in variants:
        seeds.add("dpop_proof", b"\x01" + header.encode() + b"\x00" + json.dumps(body).encode())
    for other in ['{"typ":"JWT","alg":"ES256","jwk":"$JWK"}', '{"typ":"dpop+jwt","alg":"none","jwk":"$JWK"}']:
        seeds.add("dpop_proof", b"\x01" + other.encode() + b"\x00" + json.dumps(claims).encode())
    # Even first byte: raw headers.
    for raw in ["", "a.b.c", "a.b", "e30.e30.", "a.b.c, d.e.f", "eyJ0eXAiOiJkcG9wK2p3dCJ9.e30.AAAA"]:
        seeds.add("dpop_proof", b"\x00" + raw.encode())


def json_seeds(seeds):
    """json_parse: every JWKS and hand-made texts at the edges of the grammar."""
    for data in list(seeds.by_target.get("jwks_parse", ())):
        if len(data) <= 4096:
            seeds.add("json_parse", data)
    for text in ['{"a":1,"a":2}', '{"a":{"b":1,"b":1}}', '[1e400]', '[-0]', '["\\ud83d\\ude00"]', '["\\ud83d"]',
                 '[18446744073709551616]', '[-9223372036854775809]', '[1.5e-7]', '{"exp":1700000000.5}', '[01]', '[1.]']:
        seeds.add("json_parse", text)


def main():
    fixture = load("fuzz/fixtures/pipeline.json")
    signatures = load("tests/vectors/signatures.json")
    attacks = load("tests/vectors/attacks.json")
    seeds = Seeds()
    token_seeds(seeds, fixture, signatures, attacks)
    jwks_seeds(seeds, [doc["jwks"] for doc in (fixture, signatures, attacks) if doc])
    route_seeds(seeds, attacks)
    dpop_seeds(seeds)
    json_seeds(seeds)
    seeds.write()


if __name__ == "__main__":
    main()
