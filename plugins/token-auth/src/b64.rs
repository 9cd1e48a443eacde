//! base64url without padding (RFC 4648 §5), as JWS compact serialization uses it (RFC 7515 §2).
//!
//! Written here rather than pulled in as a crate: it is forty lines, and the decoder is strict on
//! purpose. Padding, characters outside the URL-safe alphabet, impossible lengths and non-zero
//! trailing bits are all refused, so every token has exactly one accepted spelling — a token
//! that was altered in transit cannot still decode to the same bytes.

fn sextet(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some((c - b'A') as u32),
        b'a'..=b'z' => Some((c - b'a' + 26) as u32),
        b'0'..=b'9' => Some((c - b'0' + 52) as u32),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

/// Decode unpadded base64url; the error names what is wrong with the text.
pub fn decode(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    if bytes.len() % 4 == 1 {
        return Err(format!(
            "{} characters is not a possible base64url length",
            bytes.len()
        ));
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = sextet(c).ok_or_else(|| {
                format!(
                    "character {:?} is not base64url (padding is not allowed)",
                    c as char
                )
            })?;
            acc |= v << (18 - 6 * i);
        }
        let take = chunk.len() - 1; // 4 chars → 3 bytes, 3 → 2, 2 → 1
        let all = acc.to_be_bytes();
        out.extend_from_slice(&all[1..1 + take]);
        // Canonical encoding: the bits beyond the last whole byte must be zero.
        if take < 3 && acc & (0xFF_FFFF >> (8 * take)) != 0 {
            return Err("non-canonical base64url (trailing bits are not zero)".into());
        }
    }
    Ok(out)
}

/// Encode as unpadded base64url. Used by the tests to build tokens.
#[cfg(test)]
pub fn encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let mut acc = 0u32;
        for (i, &b) in chunk.iter().enumerate() {
            acc |= (b as u32) << (16 - 8 * i);
        }
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((acc >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_length() {
        let data: Vec<u8> = (0..=255u8).collect();
        for n in 0..40 {
            let text = encode(&data[..n]);
            assert_eq!(decode(&text).unwrap(), &data[..n], "length {n}");
        }
        assert_eq!(decode(&encode(&data)).unwrap(), data);
    }

    #[test]
    fn known_vectors() {
        // RFC 7515 appendix A.1 header.
        assert_eq!(
            decode("eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9").unwrap(),
            b"{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}"
        );
        assert_eq!(encode(b"\xfb\xff"), "-_8");
    }

    #[test]
    fn refuses_padding_other_alphabets_and_bad_lengths() {
        assert!(decode("Zg==").unwrap_err().contains("padding"));
        assert!(decode("a+b/").is_err());
        assert!(decode("abcde").unwrap_err().contains("length"));
        assert!(decode("ab c").is_err());
    }

    #[test]
    fn refuses_non_canonical_trailing_bits() {
        assert_eq!(decode("Zg").unwrap(), b"f");
        assert!(decode("Zh").unwrap_err().contains("non-canonical"));
        assert!(decode("Zm9").unwrap_err().contains("non-canonical"));
    }
}
