//! Email addresses: trimming, Unicode NFC, lower-casing and a structural check.

use unicode_normalization::UnicodeNormalization;

use super::{InvalidReason, Normalized, digest::parse_hex_digest, is_blank, trim};

/// Writes the normalized form of the email address `raw` to `out`.
///
/// Returns [`Normalized::Digest`] and leaves `out` empty when the trimmed value is 64 hex
/// digits, which is taken as a SHA-256 computed upstream. Otherwise the address is checked
/// and `out` contains the text to hash.
pub(super) fn normalize_email(raw: &str, out: &mut String) -> Result<Normalized, InvalidReason> {
    out.clear();
    let value = trim(raw);
    if value.is_empty() {
        return Err(InvalidReason::Empty);
    }
    if let Some(digest) = parse_hex_digest(value) {
        return Ok(Normalized::Digest(digest));
    }

    if value.is_ascii() {
        out.push_str(value);
        out.make_ascii_lowercase();
    } else {
        fold_unicode(value, out);
    }

    check_address(out)?;
    Ok(Normalized::Text)
}

/// Writes NFC(lower-case(NFC(value))) to `out`.
///
/// Lower-casing an NFC string can leave a sequence that composes further, so NFC runs again
/// afterwards. That makes normalizing an already normalized address a no-op.
fn fold_unicode(value: &str, out: &mut String) {
    let composed: String = value.nfc().collect();
    let lower = composed.to_lowercase();
    out.extend(lower.nfc());
}

/// Checks the structure of a trimmed, lower-cased address.
///
/// This is deliberately looser than RFC 5321: it rejects what cannot be an address and
/// leaves the rest to Criteo's matching. The search for `@` and `.` runs on bytes, which is
/// exact for UTF-8 because ASCII bytes never occur inside a multi-byte character.
fn check_address(address: &str) -> Result<(), InvalidReason> {
    let bytes = address.as_bytes();
    let has_blank = if address.is_ascii() {
        // The ASCII characters of `char::is_whitespace`: space and U+0009 to U+000D.
        bytes.iter().any(|b| matches!(b, b' ' | b'\t'..=b'\r'))
    } else {
        address.contains(is_blank)
    };
    if has_blank {
        return Err(InvalidReason::InnerWhitespace);
    }

    let Some(at) = bytes.iter().position(|&b| b == b'@') else {
        return Err(InvalidReason::Malformed);
    };
    let (local, domain) = (&bytes[..at], &bytes[at + 1..]);
    if local.is_empty() || domain.contains(&b'@') {
        return Err(InvalidReason::Malformed);
    }
    if !domain.contains(&b'.') || domain.split(|&b| b == b'.').any(<[u8]>::is_empty) {
        return Err(InvalidReason::Malformed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identifiers::{sha256, write_hex};

    /// Normalizes `raw` and returns the lower-case hex digest, or the rejection reason.
    fn email_hash(raw: &str) -> Result<String, InvalidReason> {
        let mut text = String::new();
        let digest = match normalize_email(raw, &mut text)? {
            Normalized::Text => sha256(text.as_bytes()),
            Normalized::Digest(digest) => digest,
        };
        let mut hex = Vec::new();
        write_hex(&digest, &mut hex);
        Ok(String::from_utf8(hex).unwrap())
    }

    fn email_text(raw: &str) -> Result<String, InvalidReason> {
        let mut text = String::new();
        assert_eq!(normalize_email(raw, &mut text)?, Normalized::Text);
        Ok(text)
    }

    const JOHN: &str = "375320dd9ae7ed408002f3768e16cb5f28c861062fd50dff9a3bff62e9dce4ef";

    #[test]
    fn email_known_hash() {
        assert_eq!(email_hash("  John.Doe@Gmail.com ").unwrap(), JOHN);
    }

    #[test]
    fn email_padding() {
        let padded = [
            "john.doe@gmail.com",
            "\tjohn.doe@gmail.com\r\n",
            "\u{00A0}john.doe@gmail.com\u{00A0}",
            "\u{2003}john.doe@gmail.com\u{2003}",
            "\u{3000}john.doe@gmail.com\u{3000}",
            "\u{FEFF}john.doe@gmail.com",
            "\u{FEFF} JOHN.DOE@GMAIL.COM \u{3000}",
        ];
        for raw in padded {
            assert_eq!(email_hash(raw).unwrap(), JOHN, "{raw:?}");
        }
    }

    #[test]
    fn email_keeps_dots_and_tags() {
        assert_eq!(
            email_text("John.Doe+News@Gmail.com").unwrap(),
            "john.doe+news@gmail.com"
        );
        assert_ne!(email_hash("johndoe@gmail.com").unwrap(), JOHN);
    }

    #[test]
    fn email_nfc_equals_nfd() {
        let composed = "Jos\u{00E9}.M\u{00FC}ller@Example.com";
        let decomposed = "Jose\u{0301}.Mu\u{0308}ller@Example.com";
        let text = email_text(composed).unwrap();
        assert_eq!(text, "jos\u{00E9}.m\u{00FC}ller@example.com");
        assert_eq!(email_text(decomposed).unwrap(), text);

        // printf %s 'josé.müller@example.com' | sha256sum, with the NFC code points.
        let expected = "a0a6a838ed72d983c50a2f4c3ea16638a600459a70cef053d49e7e12fbed0cb2";
        assert_eq!(email_hash(composed).unwrap(), expected);
        assert_eq!(email_hash(decomposed).unwrap(), expected);
    }

    #[test]
    fn email_unicode_lower_case() {
        assert_eq!(
            email_text("\u{00C9}LODIE@EXEMPLE.FR").unwrap(),
            "\u{00E9}lodie@exemple.fr"
        );
        assert_eq!(
            email_text("\u{0130}pek@\u{00D6}rnek.com").unwrap(),
            "i\u{0307}pek@\u{00F6}rnek.com"
        );
    }

    #[test]
    fn email_rejects() {
        let cases = [
            ("", InvalidReason::Empty),
            (" \u{00A0}\u{FEFF}", InvalidReason::Empty),
            ("john doe@gmail.com", InvalidReason::InnerWhitespace),
            (
                "john.doe@gmail.com\u{00A0}x",
                InvalidReason::InnerWhitespace,
            ),
            ("john.doe@gmail .com", InvalidReason::InnerWhitespace),
            ("john.doe\u{FEFF}@gmail.com", InvalidReason::InnerWhitespace),
            ("john.doe.gmail.com", InvalidReason::Malformed),
            ("john@doe@gmail.com", InvalidReason::Malformed),
            ("@gmail.com", InvalidReason::Malformed),
            ("john.doe@gmail", InvalidReason::Malformed),
            ("john.doe@", InvalidReason::Malformed),
            ("john.doe@gmail.com.", InvalidReason::Malformed),
            ("john.doe@.gmail.com", InvalidReason::Malformed),
            ("john.doe@gmail..com", InvalidReason::Malformed),
            ("j\u{00F6}hn@\u{00E9}xample", InvalidReason::Malformed),
        ];
        for (raw, reason) in cases {
            assert_eq!(email_hash(raw), Err(reason), "{raw:?}");
        }
    }

    #[test]
    fn email_prehashed_kept() {
        let upper = format!("  {}\u{00A0}", JOHN.to_uppercase());
        assert_eq!(email_hash(&upper).unwrap(), JOHN);
        assert_eq!(email_hash(JOHN).unwrap(), JOHN);
    }

    #[test]
    fn email_near_hex_rejected() {
        assert_eq!(email_hash(&JOHN[..63]), Err(InvalidReason::Malformed));
        assert_eq!(
            email_hash(&format!("{JOHN}a")),
            Err(InvalidReason::Malformed)
        );
        assert_eq!(
            email_hash(&JOHN.replacen('d', "x", 1)),
            Err(InvalidReason::Malformed)
        );
    }
}
