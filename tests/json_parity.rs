//! src/json.rs against serde_json, which it replaced as the reader of every JSON text: on a grid
//! of valid and broken texts both accept or both refuse, and an accepted text reads the same value.
//! The one deliberate difference: an object repeating a member name is refused here (serde_json
//! keeps the last value).

use edge_auth::json;
use serde_json::Value;

fn check(text: &[u8], problems: &mut Vec<String>) {
    let ours = json::parse(text);
    let theirs = serde_json::from_slice::<Value>(text);
    let shown = String::from_utf8_lossy(text);
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) if same(a, b) => {}
        (Err(_), Err(_)) => {}
        _ => problems
            .push(format!("{shown:?}: ours {ours:?}, serde_json {:?}", theirs.as_ref().map_err(|e| e.to_string()))),
    }
}

/// Equal values, and equal kinds of number (an integer is not a float), floats to the bit (-0.0 is
/// not 0): both compute a float the same way (see `json::scaled`).
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

#[test]
fn reads_what_serde_json_reads() {
    let scalars: &[&str] = &[
        "null",
        "true",
        "false",
        "nul",
        "tru",
        "True",
        "0",
        "-0",
        "1",
        "-1",
        "01",
        "-01",
        "00",
        "1.",
        ".5",
        "1.5",
        "-1.5",
        "+1",
        "1e3",
        "1E3",
        "1e+3",
        "1e-3",
        "1e",
        "1e+",
        "-",
        "--1",
        "1.5e308",
        "1e309",
        "-1e309",
        "1e-400",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "9223372036854775807",
        "123456789012345678901234567890",
        "0.1",
        "2.5e-5",
        "1_000",
        "0x10",
        "Infinity",
        "NaN",
        "\"\"",
        "\"a\"",
        "\"a",
        "\"\\\"\"",
        "\"\\\\\"",
        "\"\\/\"",
        "\"\\b\\f\\n\\r\\t\"",
        "\"\\x\"",
        "\"\\u0041\"",
        "\"\\u00e9\"",
        "\"\\uD83D\\uDE00\"",
        "\"\\uD83D\"",
        "\"\\uDE00\"",
        "\"\\uD83Dx\"",
        "\"\\uD83D\\u0041\"",
        "\"\\uD83D\\n\"",
        "\"\\u12\"",
        "\"\\u12G4\"",
        "\"\\u\"",
        "\"é\"",
        "\"\u{1F600}\"",
        "\"tab\there\"",
        "\"nl\nhere\"",
        "\"\u{7f}\"",
        "",
        " ",
        "[",
        "]",
        "{",
        "}",
        "[]",
        "[1,]",
        "[,1]",
        "[1 2]",
        "[1,2]",
        " [ 1 , 2 ] ",
        "{}",
        "{\"a\":1}",
        "{\"a\" : 1 , \"b\" : [true,null]}",
        "{a:1}",
        "{\"a\"1}",
        "{\"a\":}",
        "{\"a\":1,}",
        "{\"a\":1 \"b\":2}",
        "{1:2}",
        "[1]x",
        "[1] ",
        "\t\n\r[]",
        "\u{c}[]",
        "{\"a\":1}}",
        "{\"a\":{\"b\":{\"c\":[1,{\"d\":\"e\"}]}}}",
        "[\"\\u0000\"]",
        "{\"\\u0061\":1}",
        "{\"\":0}",
        "1.7976931348623157e308",
        "2.2250738585072014e-308",
        "4.9e-324",
        "1e-330",
        "123456789012345678901234.5e-10",
        "0.000000000000000000000000001",
        "1e-7",
        "1700000000.999",
        "-1700000000.5e0",
        "12345678901234567890123e-3",
        "1e1000000000000",
        "1e-1000000000000",
        "0e99999999999999999999",
        "9007199254740993",
        "1.00000000000000011102230246251565404236316680908203125",
    ];
    let mut problems = Vec::new();
    for text in scalars {
        check(text.as_bytes(), &mut problems);
        check(format!("[{text}]").as_bytes(), &mut problems);
        check(format!("{{\"k\":{text}}}").as_bytes(), &mut problems);
    }
    // Digit runs longer than any exponent cap, against an exponent that brings them back.
    check(format!("1{}e-1000001", "0".repeat(1_000_001)).as_bytes(), &mut problems);
    check(format!("0.{}1e1000001", "0".repeat(1_000_000)).as_bytes(), &mut problems);
    // Bytes that are not UTF-8, inside and outside strings.
    for bytes in [&b"\"\xff\""[..], b"\"\xc3\"", b"\"\xed\xa0\x80\"", b"[\xff]", b"\xef\xbb\xbf[]", b"\"\xc3\xa9\""] {
        check(bytes, &mut problems);
    }
    // Nesting at and beyond the limit.
    for depth in [1, 127, 128, 129, 1000] {
        check(format!("{}{}", "[".repeat(depth), "]".repeat(depth)).as_bytes(), &mut problems);
        let object = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        check(object.as_bytes(), &mut problems);
    }
    assert!(problems.is_empty(), "{} differences:\n{}", problems.len(), problems.join("\n"));
}

/// A fixed-seed xorshift64: the same inputs on every run, so a failure reproduces.
fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// Within the fast path (a significand of at most 53 bits, a power of ten up to 22 either way) the
/// reader is exact: it agrees with Rust's correctly rounded reader to the bit.
#[test]
fn reads_times_and_ordinary_decimals_exactly() {
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    for _ in 0..20_000 {
        let significand = next() >> (11 + next() % 40);
        let scale = (next() % 45) as i64 - 22;
        let text = format!("{significand}e{scale}");
        let ours = json::parse(text.as_bytes()).unwrap();
        let exact: f64 = text.parse().unwrap();
        assert_eq!(ours.as_f64().unwrap().to_bits(), exact.to_bits(), "{text}");
    }
}

/// Across the whole range (long significands, fractions, exponents past either end), the same
/// float as serde_json to the bit, or the same refusal.
#[test]
fn reads_any_number_as_serde_json_does() {
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    let mut problems = Vec::new();
    for _ in 0..20_000 {
        let digits = format!("{}{}", next(), next() % 1000);
        let cut = (next() % digits.len() as u64) as usize;
        let exponent = (next() % 800) as i64 - 400;
        let text = match next() % 3 {
            0 => format!("{digits}e{exponent}"),
            1 => format!("{}.{}e{exponent}", &digits[..cut.max(1)], &digits[cut.max(1)..]),
            _ => format!("-0.{digits}E+{}", exponent.abs()),
        };
        check(text.trim_end_matches('.').as_bytes(), &mut problems);
    }
    assert!(problems.is_empty(), "{} differences:\n{}", problems.len(), problems[..problems.len().min(20)].join("\n"));
}

/// The powers of ten made at run time are the compiler's nearest f64 literals, every one.
#[test]
fn powers_of_ten_are_the_nearest_floats() {
    for (e, power) in json::powers_of_ten().iter().enumerate() {
        let literal: f64 = format!("1e{e}").parse().unwrap();
        assert_eq!(power.to_bits(), literal.to_bits(), "10^{e}");
    }
}

#[test]
fn refuses_repeated_member_names_at_any_depth() {
    for text in [
        "{\"a\":1,\"a\":1}",
        "{\"a\":1,\"b\":{\"c\":1,\"c\":2}}",
        "[{\"x\":[{\"y\":1,\"y\":1}]}]",
        "{\"a\":1,\"\\u0061\":2}",
    ] {
        assert!(json::parse(text.as_bytes()).is_err(), "{text}");
        assert!(serde_json::from_str::<Value>(text).is_ok(), "{text}: serde_json keeps the last");
    }
    assert!(json::parse(b"{\"a\":1,\"b\":{\"a\":2}}").is_ok(), "the same name in two objects is no repeat");
}

#[test]
fn every_prefix_of_a_document_is_judged_alike() {
    let document = br#"{"keys":[{"kty":"RSA","kid":"k1","n":"sXch","e":"AQAB","x":[1.5e3,-2,null,true,"\u00e9\ud83d\ude00"]}],"v":18446744073709551616}"#;
    let mut problems = Vec::new();
    for end in 0..=document.len() {
        check(&document[..end], &mut problems);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn string_literals_are_what_serde_json_writes() {
    for text in
        ["", "plain", "quote \" and \\ backslash", "\u{0}\u{8}\u{c}\u{1f}\n\r\t\u{7f}", "é \u{1F600} / </script>"]
    {
        let ours = json::string_literal(text);
        assert_eq!(ours, serde_json::Value::from(text).to_string(), "{text:?}");
        assert_eq!(json::parse(ours.as_bytes()).unwrap(), serde_json::Value::from(text));
    }
}

#[test]
fn an_object_writer_writes_what_serde_json_reads_back() {
    let odd = "quote \" back \\ line \n nul \u{0} é 😀";
    let text = json::ObjectWriter::default()
        .text("component", "edge-auth.jwks")
        .text("odd", odd)
        .maybe_text("none", None)
        .maybe_text("some", Some(odd))
        .number("n", u64::MAX)
        .boolean("yes", true)
        .texts("kids", ["a", odd])
        .texts("empty", [])
        .finish();
    let read: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        read,
        serde_json::json!({
            "component": "edge-auth.jwks", "odd": odd, "none": null, "some": odd, "n": u64::MAX,
            "yes": true, "kids": ["a", odd], "empty": [],
        })
    );
    assert_eq!(json::ObjectWriter::default().finish(), "{}");
}
