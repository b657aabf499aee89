// A DPoP client built on the `dpop` npm package (panva), not on anything of this repository, so
// the worker is shown to accept proofs made by an ordinary client library (tests/e2e.rs).
//
// Prints its public key's RFC 7638 thumbprint (`jkt`, by jose), then answers each line
// "METHOD URL TOKEN" on stdin with one proof line on stdout.
import * as DPoP from "dpop";
import { calculateJwkThumbprint, exportJWK } from "jose";
import { createInterface } from "node:readline";

const keypair = await DPoP.generateKeyPair("ES256");
const jkt = await calculateJwkThumbprint(await exportJWK(keypair.publicKey), "sha256");
console.log(jkt);
for await (const line of createInterface({ input: process.stdin })) {
  const [method, url, token] = line.trim().split(" ");
  if (!method) continue;
  console.log(await DPoP.generateProof(keypair, url, method, undefined, token));
}
