//! Identifiers sent in clear: mobile advertising ids and opaque ids.

use super::{InvalidReason, trim};

/// Writes the lower-case form of the mobile advertising id `raw` to `out`.
///
/// IDFA and GAID are UUIDs in the `8-4-4-4-12` hex form. The all-zero UUID is rejected
/// because iOS and Android report it for every user who limited ad tracking.
pub(super) fn normalize_madid(raw: &str, out: &mut String) -> Result<(), InvalidReason> {
    out.clear();
    let value = trim(raw);
    if value.is_empty() {
        return Err(InvalidReason::Empty);
    }
    if !is_uuid(value.as_bytes()) {
        return Err(InvalidReason::NotAUuid);
    }
    if value.bytes().all(|b| b == b'0' || b == b'-') {
        return Err(InvalidReason::ZeroUuid);
    }

    out.push_str(value);
    out.make_ascii_lowercase();
    Ok(())
}

fn is_uuid(bytes: &[u8]) -> bool {
    const HYPHENS: [usize; 4] = [8, 13, 18, 23];
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| {
            if HYPHENS.contains(&i) {
                *b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        })
}

/// Returns the trimmed identifier, which must not be empty.
///
/// identityLink, gum and customerid values are opaque to Criteo's public documentation, so
/// nothing beyond trimming is checked or changed.
pub(super) fn trim_identifier(raw: &str) -> Result<&str, InvalidReason> {
    let value = trim(raw);
    if value.is_empty() {
        Err(InvalidReason::Empty)
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn madid(raw: &str) -> Result<String, InvalidReason> {
        let mut out = String::new();
        normalize_madid(raw, &mut out)?;
        Ok(out)
    }

    #[test]
    fn madid_lower_cased() {
        let lower = "3f097372-f01e-4b64-984c-395ae5828ee6";
        assert_eq!(madid(lower).as_deref(), Ok(lower));
        assert_eq!(
            madid("3F097372-F01E-4B64-984C-395AE5828EE6").as_deref(),
            Ok(lower)
        );
        assert_eq!(
            madid("\u{FEFF} 3F097372-f01e-4B64-984c-395AE5828EE6\n").as_deref(),
            Ok(lower)
        );
    }

    #[test]
    fn madid_rejects() {
        let cases = [
            ("", InvalidReason::Empty),
            (
                "{3f097372-f01e-4b64-984c-395ae5828ee6}",
                InvalidReason::NotAUuid,
            ),
            ("3f097372f01e4b64984c395ae5828ee6", InvalidReason::NotAUuid),
            (
                "3f097372-f01e-4b64-984c-395ae5828ee",
                InvalidReason::NotAUuid,
            ),
            (
                "3f097372-f01e-4b64-984c-395ae5828ee6a",
                InvalidReason::NotAUuid,
            ),
            (
                "3f097372-f01e-4b64-984c_395ae5828ee6",
                InvalidReason::NotAUuid,
            ),
            (
                "3f097372-f01e-4b64-984c-395ae5828eg6",
                InvalidReason::NotAUuid,
            ),
            (
                "3f097372 f01e-4b64-984c-395ae5828ee6",
                InvalidReason::NotAUuid,
            ),
            (
                "3f097372-f01e-4b64-984c-395ae5828e\u{00E9}",
                InvalidReason::NotAUuid,
            ),
            ("not a device id", InvalidReason::NotAUuid),
            (
                "00000000-0000-0000-0000-000000000000",
                InvalidReason::ZeroUuid,
            ),
        ];
        for (raw, reason) in cases {
            assert_eq!(madid(raw), Err(reason), "{raw:?}");
        }
    }

    #[test]
    fn opaque_ids_trimmed() {
        assert_eq!(trim_identifier(" Xi-123 \u{3000}"), Ok("Xi-123"));
        assert_eq!(trim_identifier("a b"), Ok("a b"));
        assert_eq!(trim_identifier("\u{00A0}\t"), Err(InvalidReason::Empty));
    }
}
