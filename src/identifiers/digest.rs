//! SHA-256 digests and their lower-case hex text.

use sha2::{Digest, Sha256};

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Computes the SHA-256 digest of `bytes`.
///
/// `sha2` uses the CPU's SHA extensions when it detects them at run time.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Appends the 64 lower-case hex digits of `digest` to `out`.
pub fn write_hex(digest: &[u8; 32], out: &mut Vec<u8>) {
    out.reserve(64);
    for &byte in digest {
        out.push(HEX_DIGITS[usize::from(byte >> 4)]);
        out.push(HEX_DIGITS[usize::from(byte & 0x0f)]);
    }
}

/// Parses a SHA-256 digest written as exactly 64 hex digits, in any case.
pub fn parse_hex_digest(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }

    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(bytes.chunks_exact(2)) {
        *byte = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
    }
    Some(digest)
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(digest: &[u8; 32]) -> String {
        let mut out = Vec::new();
        write_hex(digest, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn sha256_known_vectors() {
        // Checked with `printf %s VALUE | sha256sum` (GNU coreutils).
        let vectors = [
            (
                "",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                "abc",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                "john.doe@gmail.com",
                "375320dd9ae7ed408002f3768e16cb5f28c861062fd50dff9a3bff62e9dce4ef",
            ),
            (
                "+33612345678",
                "42d573cfc315801d4cd8eddd5416b416a0bf298b9b9e12d6b07442c91db42bd8",
            ),
        ];
        for (input, expected) in vectors {
            assert_eq!(hex(&sha256(input.as_bytes())), expected, "{input:?}");
        }
    }

    #[test]
    fn write_hex_appends() {
        let mut out = b"x=".to_vec();
        let digest: [u8; 32] = std::array::from_fn(|i| (i * 8) as u8);
        write_hex(&digest, &mut out);
        assert_eq!(out.len(), 66);
        assert!(out.starts_with(b"x=0008101820"));
        assert!(out.ends_with(b"f0f8"));
    }

    #[test]
    fn parse_hex_any_case() {
        let digest = sha256(b"abc");
        let lower = hex(&digest);
        assert_eq!(parse_hex_digest(&lower), Some(digest));
        assert_eq!(parse_hex_digest(&lower.to_uppercase()), Some(digest));
    }

    #[test]
    fn parse_hex_rejects() {
        let lower = hex(&sha256(b"abc"));
        assert_eq!(parse_hex_digest(&lower[..63]), None);
        assert_eq!(parse_hex_digest(&format!("{lower}0")), None);
        assert_eq!(parse_hex_digest(&lower.replacen('a', "g", 1)), None);
        assert_eq!(parse_hex_digest(&format!(" {}", &lower[1..])), None);
        assert_eq!(parse_hex_digest(""), None);
    }
}
