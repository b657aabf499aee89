//! Raw bytes → `KeySet::parse`, as the body of an issuer's JWKS response.
//!
//! Invariants: no panic; a set is never empty; every key is usable (a modulus of 2048 to 4096
//! bits, an odd exponent of at least 3 and at most 33 bits, both without leading zero bytes, a
//! signature length equal to the modulus' bytes); `kid`s are unique and each selects its own key;
//! a set answers a token without `kid` only when it holds one key; and each key is the material
//! of an RSA entry of the document with that `kid`, neither for encryption nor for another alg.

#![no_main]

use base64ct::{Base64UrlUnpadded, Encoding};
use edge_auth::keys::jwks::{KeySet, MAX_MODULUS_BITS, MIN_MODULUS_BITS};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn bits(be: &[u8]) -> usize {
    be.iter().position(|&b| b != 0).map_or(0, |i| (be.len() - i) * 8 - be[i].leading_zeros() as usize)
}

fn strip(be: &[u8]) -> &[u8] {
    &be[be.iter().take_while(|&&b| b == 0).count()..]
}

fuzz_target!(|data: &[u8]| {
    let Ok(set) = KeySet::parse(data) else { return };
    assert!(!set.is_empty() && set.len() == set.kids().len());
    let kids = set.kids();
    let document: Option<Value> = serde_json::from_slice(data).ok();
    let entries = document.as_ref().and_then(|d| d["keys"].as_array());

    // The keys a token can reach: by its kid, or the only key of a one-key set when it has none.
    let mut reachable = Vec::new();
    for (i, kid) in kids.iter().enumerate() {
        match set.select(Some(kid)) {
            Ok(key) => {
                assert_eq!(key.kid(), Some(kid.as_str()));
                reachable.push(key);
            }
            // A key without kid lists as "" and no kid names it.
            Err(_) if kid.is_empty() => {}
            Err(e) => panic!("kid {kid:?} listed but not selectable: {e:?}"),
        }
        assert!(kid.is_empty() || kids[..i].iter().all(|k| k != kid), "kid {kid:?} twice");
    }
    reachable.extend(set.select(None));

    for key in reachable {
        let (n, e) = (key.modulus(), key.exponent());
        assert!((MIN_MODULUS_BITS..=MAX_MODULUS_BITS).contains(&bits(n)), "modulus of {} bits", bits(n));
        assert_ne!(n[0], 0, "modulus with a leading zero byte");
        assert_eq!(key.modulus_bits(), bits(n));
        assert_eq!(key.signature_len(), n.len());
        assert!(!e.is_empty() && e[0] != 0, "exponent with a leading zero byte: {e:?}");
        assert!((2..=33).contains(&bits(e)), "exponent of {} bits", bits(e));
        assert_eq!(e[e.len() - 1] & 1, 1, "even exponent");

        // The document holds an RSA signing entry for RS256 with this kid and exactly this material.
        if let Some(entries) = entries {
            let decode = |v: &Value| v.as_str().and_then(|s| Base64UrlUnpadded::decode_vec(s).ok());
            // null counts as absent, as for serde's Option.
            let absent_or = |entry: &Value, name: &str, want: &str| entry[name].is_null() || entry[name] == want;
            let source = entries.iter().any(|entry| {
                entry.get("kid").and_then(Value::as_str) == key.kid()
                    && entry["kty"] == "RSA"
                    && absent_or(entry, "use", "sig")
                    && absent_or(entry, "alg", "RS256")
                    && entry
                        .get("key_ops")
                        .is_none_or(|ops| ops.as_array().is_some_and(|ops| ops.iter().any(|op| op == "verify")))
                    && ["d", "p", "q", "dp", "dq", "qi", "oth"].iter().all(|private| entry.get(private).is_none())
                    && decode(&entry["n"]).is_some_and(|m| strip(&m) == n)
                    && decode(&entry["e"]).is_some_and(|x| strip(&x) == e)
            });
            assert!(source, "key {:?} is no RSA signing entry of the document", key.kid());
        }
    }
    match set.select(None) {
        Ok(_) => assert_eq!(set.len(), 1, "a token without kid was given a key of a set of {}", set.len()),
        Err(_) => assert_ne!(set.len(), 1, "a one-key set refused a token without kid"),
    }
});
