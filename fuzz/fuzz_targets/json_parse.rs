//! Raw bytes → `edge_auth::json::parse`, differentially against serde_json (the reader it
//! replaced for tokens, proofs, JWKS documents, stored copies and configuration).
//!
//! Invariants: no panic; when serde_json refuses a text, so does ours; when ours accepts, serde_json
//! reads the same value (integers equal and of the same kind, floats to the bit); when ours refuses a text serde_json accepts, the reason is a repeated member name,
//! and some object of the text really repeats one.

#![no_main]

use edge_auth::json;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_u64(), y.as_u64(), x.as_i64(), y.as_i64()) {
            (Some(p), Some(q), _, _) => p == q,
            (None, None, Some(p), Some(q)) => p == q,
            (None, None, None, None) => {
                let (p, q) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                p.to_bits() == q.to_bits()
            }
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((k, p), (l, q))| k == l && same(p, q))
        }
        _ => a == b,
    }
}

/// Whether some object of the text names a member twice, read with serde_json's own events.
fn repeats_a_name(text: &[u8]) -> bool {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    struct Probe;
    impl<'de> DeserializeSeed<'de> for Probe {
        type Value = bool;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_any(Probe)
        }
    }
    impl<'de> Visitor<'de> for Probe {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_str<E>(self, _: &str) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_unit<E>(self) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
            let mut found = false;
            while let Some(inner) = seq.next_element_seed(Probe)? {
                found |= inner;
            }
            Ok(found)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            let (mut names, mut found) = (std::collections::BTreeSet::new(), false);
            while let Some(name) = map.next_key::<String>()? {
                found |= !names.insert(name);
                found |= map.next_value_seed(Probe)?;
            }
            Ok(found)
        }
    }
    let mut d = serde_json::Deserializer::from_slice(text);
    Probe.deserialize(&mut d).unwrap_or(false)
}

fuzz_target!(|data: &[u8]| {
    let ours = json::parse(data);
    let theirs = serde_json::from_slice::<Value>(data);
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) => assert!(same(a, b), "read differently: {a:?} / {b:?}"),
        (Ok(a), Err(e)) => panic!("accepted {a:?}, which serde_json refuses: {e}"),
        (Err(e), Ok(_)) => {
            assert_eq!(e.what, "duplicate member name", "refused what serde_json reads: {e}");
            assert!(repeats_a_name(data), "claimed a repeated name where there is none");
        }
        (Err(_), Err(_)) => {}
    }
});
