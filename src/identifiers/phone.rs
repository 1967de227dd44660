//! Phone numbers: parsing written forms into E.164 (`+`, calling code, national number).
//!
//! A number is international when it starts with `+` or with the `00` international call
//! prefix, and its calling code is then read from its first one to three digits. Any other
//! number is national and belongs to the configured default country. In both cases a
//! leading trunk prefix (the `0` of `06 12 34 56 78` in France, the `1` of `1 415 555 2671`
//! in the US, also written as `+44 (0)20 ...`) is dropped when what remains is a valid
//! national number. A national number is valid when its country has numbers of that length
//! starting with that digit (see the `calling_codes` table).
//!
//! Nothing is guessed: a number without `+` or `00` is never read as international, even if
//! it starts with a calling code. Such a number usually fails the length check of the
//! default country and is counted invalid.
//!
//! NOTE: the table checks lengths per first digit, not the number ranges libphonenumber
//! validates, so an unassigned number of the right length (such as the fictional US
//! 555-01xx range) is accepted. Countries with variable-length numbers (Germany, Austria)
//! accept many lengths, so a German default country also accepts `49...` written without
//! `+` as a long national number. Carrier selection codes (Brazil, Colombia) are not
//! removed; numbers written with them fail the length check.

use std::fmt::Write;

use super::calling_codes::{CALLING_CODES, REGIONS};
use super::{InvalidReason, Normalized, digest::parse_hex_digest, is_blank, trim};

/// Maximum number of digits read: the 15 of E.164, a two-digit international prefix
/// (`00`), a trunk prefix of up to two digits and one spare.
const MAX_DIGITS: usize = 20;

/// Numbering facts of one country calling code or one region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Numbering {
    calling_code: u16,
    /// Digits dialled before a national number inside the country, empty when none.
    trunk_prefix: &'static [u8],
    /// Entry `d` has bit `n` set when national significant numbers starting with digit `d`
    /// may have `n` digits.
    lengths_by_first_digit: [u16; 10],
}

impl Numbering {
    pub(super) const fn new(
        calling_code: u16,
        trunk_prefix: &'static [u8],
        lengths_by_first_digit: [u16; 10],
    ) -> Self {
        Numbering {
            calling_code,
            trunk_prefix,
            lengths_by_first_digit,
        }
    }

    /// Looks up the numbering of a region by its ISO 3166-1 alpha-2 code, in any case.
    pub(super) fn for_region(code: &str) -> Option<&'static Numbering> {
        let key: [u8; 2] = code.as_bytes().try_into().ok()?;
        let key = key.map(|b| b.to_ascii_uppercase());
        let index = REGIONS
            .binary_search_by_key(&key, |(region, _)| *region)
            .ok()?;
        Some(&REGIONS[index].1)
    }

    /// Splits the calling code off the digits of an international number.
    fn for_international(digits: &[u8]) -> Option<(&'static Numbering, &[u8])> {
        // No calling code starts with 0; without this check `+01...` would read as +1.
        if digits.first() == Some(&b'0') {
            return None;
        }
        let mut code = 0u16;
        for (length, &digit) in digits.iter().enumerate().take(3) {
            code = code * 10 + u16::from(digit - b'0');
            if let Ok(index) = CALLING_CODES.binary_search_by_key(&code, |n| n.calling_code) {
                return Some((&CALLING_CODES[index], &digits[length + 1..]));
            }
        }
        None
    }

    /// Returns the national significant number written as `digits`, without the trunk
    /// prefix when the number starts with one and is valid without it.
    fn national_number<'a>(&self, digits: &'a [u8]) -> Option<&'a [u8]> {
        if !self.trunk_prefix.is_empty()
            && let Some(rest) = digits.strip_prefix(self.trunk_prefix)
            && self.is_valid(rest)
        {
            return Some(rest);
        }
        self.is_valid(digits).then_some(digits)
    }

    fn is_valid(&self, national: &[u8]) -> bool {
        let Some(&first) = national.first() else {
            return false;
        };
        let lengths = self.lengths_by_first_digit[usize::from(first - b'0')];
        national.len() < 16 && lengths & (1 << national.len()) != 0
    }
}

/// Writes the E.164 form of the phone number `raw` to `out`.
///
/// `default` is the numbering of numbers written without `+` or `00`. Returns
/// [`Normalized::Digest`] and leaves `out` empty when the trimmed value is 64 hex digits,
/// which is taken as a SHA-256 computed upstream.
pub(super) fn normalize_phone(
    raw: &str,
    default: Option<&Numbering>,
    out: &mut String,
) -> Result<Normalized, InvalidReason> {
    out.clear();
    let value = trim(raw);
    if value.is_empty() {
        return Err(InvalidReason::Empty);
    }
    if let Some(digest) = parse_hex_digest(value) {
        return Ok(Normalized::Digest(digest));
    }

    let mut buffer = [0u8; MAX_DIGITS];
    let (digits, plus) = collect_digits(value, &mut buffer)?;

    let (numbering, national) = if plus {
        Numbering::for_international(digits).ok_or(InvalidReason::UnknownCountryCode)?
    } else if let Some(rest) = digits.strip_prefix(b"00") {
        Numbering::for_international(rest).ok_or(InvalidReason::UnknownCountryCode)?
    } else {
        (default.ok_or(InvalidReason::NoCountryCode)?, digits)
    };
    let national = numbering
        .national_number(national)
        .ok_or(InvalidReason::WrongLength)?;

    // `fmt::Write` for `String` never returns an error.
    let _ = write!(out, "+{}", numbering.calling_code);
    out.extend(national.iter().map(|&digit| char::from(digit)));
    Ok(Normalized::Text)
}

/// Copies the digits of `value` to `buffer`, skipping formatting characters, and returns
/// them with whether the number starts with `+`.
fn collect_digits<'a>(
    value: &str,
    buffer: &'a mut [u8; MAX_DIGITS],
) -> Result<(&'a [u8], bool), InvalidReason> {
    let plus = value.starts_with('+');
    let rest = if plus { &value[1..] } else { value };

    let mut count = 0;
    for c in rest.chars() {
        match c {
            '0'..='9' => {
                let slot = buffer.get_mut(count).ok_or(InvalidReason::WrongLength)?;
                *slot = c as u8;
                count += 1;
            }
            ' ' | '.' | '-' | '/' | '(' | ')' => {}
            c if is_blank(c) => {}
            _ => return Err(InvalidReason::InvalidCharacter),
        }
    }
    Ok((&buffer[..count], plus))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identifiers::{sha256, write_hex};

    fn e164(raw: &str, default: Option<&str>) -> Result<String, InvalidReason> {
        let numbering = default.map(|code| Numbering::for_region(code).unwrap());
        let mut out = String::new();
        assert_eq!(normalize_phone(raw, numbering, &mut out)?, Normalized::Text);
        Ok(out)
    }

    #[test]
    fn phone_international() {
        let cases = [
            ("+33612345678", "+33612345678"),
            ("+33 6 12 34 56 78", "+33612345678"),
            ("+33 (0)6 12 34 56 78", "+33612345678"),
            ("+49 (0)30 1234567", "+49301234567"),
            ("+44 20 7946 0958", "+442079460958"),
            ("+44 (0)20 7946 0958", "+442079460958"),
            ("+1 (415) 555-2671", "+14155552671"),
            ("+1.415.555.2671", "+14155552671"),
            ("+7 800 555 35 35", "+78005553535"),
            ("+39 06 1234 5678", "+390612345678"),
            ("+800 1234 5678", "+80012345678"),
            ("\u{FEFF}+33\u{00A0}6\u{202F}12 34 56 78 ", "+33612345678"),
        ];
        for (raw, expected) in cases {
            assert_eq!(e164(raw, None).as_deref(), Ok(expected), "{raw:?}");
            assert_eq!(
                e164(raw, Some("US")).as_deref(),
                Ok(expected),
                "{raw:?} with US default"
            );
        }
    }

    #[test]
    fn phone_00_prefix() {
        assert_eq!(
            e164("0033 6 12 34 56 78", None).as_deref(),
            Ok("+33612345678")
        );
        assert_eq!(
            e164("00 44 7700 900123", Some("FR")).as_deref(),
            Ok("+447700900123")
        );
        assert_eq!(
            e164("0049/30/1234567", Some("DE")).as_deref(),
            Ok("+49301234567")
        );
    }

    #[test]
    fn phone_national() {
        let cases = [
            ("06 12 34 56 78", "FR", "+33612345678"),
            ("06.12.34.56.78", "fr", "+33612345678"),
            ("612345678", "FR", "+33612345678"),
            ("030 1234567", "DE", "+49301234567"),
            ("0151 12345678", "DE", "+4915112345678"),
            ("(415) 555-2671", "US", "+14155552671"),
            ("1 415 555 2671", "US", "+14155552671"),
            ("07700 900123", "GB", "+447700900123"),
            ("020 7946 0958", "GB", "+442079460958"),
            ("8 800 555 35 35", "RU", "+78005553535"),
            ("06 1234 5678", "IT", "+390612345678"),
        ];
        for (raw, country, expected) in cases {
            assert_eq!(
                e164(raw, Some(country)).as_deref(),
                Ok(expected),
                "{raw:?} in {country}"
            );
        }
    }

    #[test]
    fn phone_rejects() {
        let cases = [
            ("", None, InvalidReason::Empty),
            ("\u{3000}", Some("FR"), InvalidReason::Empty),
            ("06 12 34 56 78", None, InvalidReason::NoCountryCode),
            ("+33 6 12 AB 56 78", None, InvalidReason::InvalidCharacter),
            (
                "06 12 34 56 78 ext. 12",
                Some("FR"),
                InvalidReason::InvalidCharacter,
            ),
            ("tel:+33612345678", None, InvalidReason::InvalidCharacter),
            ("33+612345678", Some("FR"), InvalidReason::InvalidCharacter),
            ("+0 12 34 56 78", None, InvalidReason::UnknownCountryCode),
            ("+01 415 555 2671", None, InvalidReason::UnknownCountryCode),
            (
                "000 33 6 12 34 56 78",
                Some("FR"),
                InvalidReason::UnknownCountryCode,
            ),
            ("+999 1234 5678", None, InvalidReason::UnknownCountryCode),
            ("+", None, InvalidReason::UnknownCountryCode),
            ("+33 6 12 34 56 7", None, InvalidReason::WrongLength),
            ("+33 6 12 34 56 789", None, InvalidReason::WrongLength),
            ("06 12 34 56 7", Some("FR"), InvalidReason::WrongLength),
            ("061234567", Some("FR"), InvalidReason::WrongLength),
            ("33612345678", Some("FR"), InvalidReason::WrongLength),
            ("+1 415 555 26711", None, InvalidReason::WrongLength),
            ("+1 015 555 2671", None, InvalidReason::WrongLength),
            ("+1 555 2671", None, InvalidReason::WrongLength),
            ("+49 1234 5678 9012 3456", None, InvalidReason::WrongLength),
            (
                "1234567890123456789012",
                Some("DE"),
                InvalidReason::WrongLength,
            ),
            ("---", Some("FR"), InvalidReason::WrongLength),
        ];
        for (raw, country, reason) in cases {
            assert_eq!(e164(raw, country), Err(reason), "{raw:?} in {country:?}");
        }
    }

    #[test]
    fn phone_known_hash() {
        let mut out = String::new();
        let france = Numbering::for_region("FR");
        assert_eq!(
            normalize_phone("06 12 34 56 78", france, &mut out),
            Ok(Normalized::Text)
        );

        let mut hex = Vec::new();
        write_hex(&sha256(out.as_bytes()), &mut hex);
        let expected = "42d573cfc315801d4cd8eddd5416b416a0bf298b9b9e12d6b07442c91db42bd8";
        assert_eq!(hex, expected.as_bytes());
    }

    #[test]
    fn phone_prehashed_kept() {
        let text = "42D573CFC315801D4CD8EDDD5416B416A0BF298B9B9E12D6B07442C91DB42BD8";
        let mut out = String::new();
        let expected = parse_hex_digest(text).unwrap();
        assert_eq!(
            normalize_phone(text, None, &mut out),
            Ok(Normalized::Digest(expected))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn region_lookup() {
        assert_eq!(Numbering::for_region("FR").unwrap().calling_code, 33);
        assert_eq!(Numbering::for_region("gb").unwrap().calling_code, 44);
        assert_eq!(Numbering::for_region("US").unwrap().trunk_prefix, b"1");
        assert_eq!(Numbering::for_region("IT").unwrap().trunk_prefix, b"");
        for code in ["", "F", "FRA", "XX", "001", "É"] {
            assert!(Numbering::for_region(code).is_none(), "{code:?}");
        }
    }

    #[test]
    fn tables_sorted_and_prefix_free() {
        assert!(REGIONS.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(
            CALLING_CODES
                .windows(2)
                .all(|w| w[0].calling_code < w[1].calling_code)
        );

        for a in &CALLING_CODES {
            for b in &CALLING_CODES {
                let (a, b) = (a.calling_code.to_string(), b.calling_code.to_string());
                assert!(a == b || !b.starts_with(&a), "+{a} is a prefix of +{b}");
            }
        }
    }

    #[test]
    fn regions_match_calling_codes() {
        for (region, numbering) in &REGIONS {
            let code = numbering.calling_code;
            let index = CALLING_CODES.binary_search_by_key(&code, |n| n.calling_code);
            let shared = &CALLING_CODES[index.unwrap()];
            let name = String::from_utf8_lossy(region);
            assert_eq!(shared.trunk_prefix, numbering.trunk_prefix, "{name}");
            for (by_region, by_code) in numbering
                .lengths_by_first_digit
                .iter()
                .zip(shared.lengths_by_first_digit)
            {
                assert_eq!(by_code & by_region, *by_region, "{name}");
            }
            assert!(
                numbering.lengths_by_first_digit.iter().any(|&l| l != 0),
                "{name}"
            );

            // E.164 caps the whole number, calling code included, at 15 digits.
            let all_lengths = numbering
                .lengths_by_first_digit
                .iter()
                .fold(0, |acc, l| acc | l);
            let longest = 15 - all_lengths.leading_zeros() as usize;
            assert!(code.to_string().len() + longest <= 15, "{name}");
        }
    }
}
