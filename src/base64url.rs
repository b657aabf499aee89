//! Base64url without padding, decoded by table: a token's segments on every verification.
//!
//! `base64ct` decodes in constant time, which secrets need and a token does not (its segments are
//! what the client sent); that care made decoding ~4% of a distinct token's CPU at the edge. This
//! decoder is as strict as `base64ct`'s: the URL-safe alphabet only, no padding, no length that
//! leaves a lone character, and the unused bits of the last character zero (so each byte string
//! has exactly one encoding). `tests` compare the two on every kind of input.

/// 0..=63 for a character of the alphabet, `INVALID` for anything else.
const INVALID: u8 = 0xFF;

const TABLE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut i = 0;
    while i < 64 {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// The bytes `text` encodes, or `None` when it is not canonical unpadded base64url.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    let mut chunks = text.chunks_exact(4);
    for chunk in &mut chunks {
        let (a, b, c, d) =
            (TABLE[chunk[0] as usize], TABLE[chunk[1] as usize], TABLE[chunk[2] as usize], TABLE[chunk[3] as usize]);
        if (a | b | c | d) == INVALID || (a | b | c | d) & 0xC0 != 0 {
            return None;
        }
        let n = (u32::from(a) << 18) | (u32::from(b) << 12) | (u32::from(c) << 6) | u32::from(d);
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    let rest = chunks.remainder();
    let value = |i: usize| Some(TABLE[rest[i] as usize]).filter(|v| *v != INVALID).map(u32::from);
    match rest.len() {
        0 => {}
        2 => {
            let n = (value(0)? << 18) | (value(1)? << 12);
            if n & 0xFFFF != 0 {
                return None;
            }
            out.push((n >> 16) as u8);
        }
        3 => {
            let n = (value(0)? << 18) | (value(1)? << 12) | (value(2)? << 6);
            if n & 0xFF != 0 {
                return None;
            }
            out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8]);
        }
        _ => return None,
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use base64ct::{Base64UrlUnpadded, Encoding};

    use super::decode;

    fn reference(text: &str) -> Option<Vec<u8>> {
        Base64UrlUnpadded::decode_vec(text).ok()
    }

    #[test]
    fn it_agrees_with_base64ct_on_every_length_every_last_character_and_every_byte() {
        // Every byte string up to 7 long from a walk over all byte values, encoded and decoded.
        for len in 0..8 {
            for start in 0..=255u8 {
                let bytes: Vec<u8> =
                    (0..len).map(|i| start.wrapping_mul(37).wrapping_add((i as u8).wrapping_mul(101))).collect();
                let text = Base64UrlUnpadded::encode_string(&bytes);
                assert_eq!(decode(&text), Some(bytes), "{text}");
            }
        }
        // Every character (all 256 byte values, and a few non-ASCII ones) at every place of short
        // texts: accepted and refused exactly as base64ct does, canonical last bits included.
        let mut texts = Vec::new();
        for base in ["", "QQ", "QUI", "QUJD", "QUJDRA", "QUJDREU"] {
            for at in 0..=base.len() {
                for byte in 0..=255u8 {
                    let mut text = base.as_bytes().to_vec();
                    text.insert(at, byte);
                    if let Ok(text) = String::from_utf8(text) {
                        texts.push(text);
                    }
                }
                for other in ["é", "€", "=", "==", "+", "/", " "] {
                    let mut text = base.to_owned();
                    text.insert_str(at, other);
                    texts.push(text);
                }
            }
        }
        for text in &texts {
            assert_eq!(decode(text), reference(text), "{text:?}");
        }
    }
}
