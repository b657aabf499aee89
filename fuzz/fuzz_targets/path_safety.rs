//! Raw bytes → a request path (lossy UTF-8) → `rules::is_ambiguous_path` (the pipeline's gate)
//! against the plainest reading of its rule: `//`, `;` or `\`; a `.` or `..` segment; a `%` not
//! followed by two hex digits; an escape of an unreserved character, `/`, `\`, `;`, `?`, `#` or a
//! control character; an escaped `%` followed by two hex digits; or escapes that decode to bytes that are
//! not UTF-8.
//!
//! And every path with an encoded separator is ambiguous.

#![no_main]

use edge_auth::gateway::rules::is_ambiguous_path;
use libfuzzer_sys::fuzz_target;

fn ambiguous(path: &str) -> bool {
    if path.contains("//") || path.contains(';') || path.contains('\\') {
        return true;
    }
    if path.split('/').any(|segment| segment == "." || segment == "..") {
        return true;
    }
    let mut chunks = path.split('%');
    let mut decoded = chunks.next().unwrap_or_default().as_bytes().to_vec();
    for chunk in chunks {
        let hex = match chunk.get(..2) {
            Some(hex) if hex.bytes().all(|b| b.is_ascii_hexdigit()) => hex,
            _ => return true,
        };
        let byte = u8::from_str_radix(hex, 16).expect("two hex digits");
        if byte.is_ascii_alphanumeric() || b"-._~/\\;?#".contains(&byte) || byte.is_ascii_control() {
            return true;
        }
        if byte == b'%' && chunk.len() >= 4 && chunk.as_bytes()[2..4].iter().all(u8::is_ascii_hexdigit) {
            return true;
        }
        decoded.push(byte);
        decoded.extend_from_slice(&chunk.as_bytes()[2..]);
    }
    String::from_utf8(decoded).is_err()
}

fuzz_target!(|data: &[u8]| {
    let path = String::from_utf8_lossy(data);
    let lower = path.to_ascii_lowercase();
    let encoded_separator = ["%2f", "%5c", "%2e", "%3b", "%3f", "%23"].iter().any(|encoded| lower.contains(encoded));
    assert_eq!(is_ambiguous_path(&path), ambiguous(&path), "is_ambiguous_path({path:?})");
    assert!(!encoded_separator || is_ambiguous_path(&path), "an encoded separator not ambiguous: {path:?}");
});
