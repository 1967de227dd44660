//! Normalization and hashing of member identifiers read from Arrow columns.
//!
//! A [`Normalizer`] reads one identifier type from one or more Arrow columns. It writes
//! each value in the canonical form Criteo matches on and hashes the types Criteo takes
//! hashed. [`Normalizer::finish`] then returns the sorted, deduplicated [`IdentifierSet`]
//! with counts of null and invalid values. The rules per type:
//!
//! | type | normalization | sent as |
//! |---|---|---|
//! | `email` | trim, Unicode NFC, lower-case; one `@`, non-empty local part, dotted domain, no whitespace inside | SHA-256 hex |
//! | `madid` | trim; a UUID `8-4-4-4-12` in hex; lower-case | clear |
//! | `identityLink`, `gum`, `customerid` | trim; non-empty | clear |
//! | `phoneNumber` | E.164: `+`, calling code, national number; at most 15 digits | SHA-256 hex |
//!
//! Trimming removes Unicode whitespace (the `White_Space` property, which includes U+00A0,
//! U+2003 and U+3000) and the byte order mark U+FEFF from both ends. An email or phone value
//! that already is 64 hex digits is taken as a SHA-256 digest computed upstream and is not
//! hashed again. Gmail dots and `+tag` suffixes are kept, because Criteo documents no such
//! rule and removing them would change who matches.
//!
//! Values are personal data. No error, log line or `Debug` output of this module contains an
//! identifier value, clear or hashed: invalid values are only counted per [`InvalidReason`].
//!
//! ASCII values, the common case, are trimmed and lower-cased into a buffer that is reused
//! for every row and hashed from there, so normalizing one allocates nothing per row beyond
//! the output itself. Only values with non-ASCII characters go through NFC and Unicode
//! lower-casing, which allocate.

mod calling_codes;
mod clear;
mod digest;
mod email;
mod normalizer;
mod phone;
mod set;

use std::fmt;

use datafusion::arrow::datatypes::DataType;
use serde::{Deserialize, Serialize};

pub use digest::{parse_hex_digest, sha256, write_hex};
pub use normalizer::Normalizer;
pub use set::{IdentifierSet, NormalizedIdentifiers};

/// Kind of identifier an audience is matched on, named as in the activation configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IdentifierType {
    /// Email address, sent as the SHA-256 of the normalized address.
    #[serde(rename = "email")]
    Email,
    /// Mobile advertising id (IDFA on iOS, GAID on Android), a UUID sent in clear.
    #[serde(rename = "madid")]
    Madid,
    /// LiveRamp IdentityLink (RampID), sent in clear as received from LiveRamp.
    #[serde(rename = "identityLink")]
    IdentityLink,
    /// Criteo user id from Criteo's GUM cookie sync, sent in clear.
    #[serde(rename = "gum")]
    Gum,
    /// Retailer's own customer id, sent in clear to Retail Media customer lists only.
    #[serde(rename = "customerid")]
    CustomerId,
    /// Phone number, sent as the SHA-256 of its E.164 form.
    #[serde(rename = "phoneNumber")]
    PhoneNumber,
}

impl IdentifierType {
    /// Every identifier type, in declaration order.
    pub const ALL: [IdentifierType; 6] = [
        IdentifierType::Email,
        IdentifierType::Madid,
        IdentifierType::IdentityLink,
        IdentifierType::Gum,
        IdentifierType::CustomerId,
        IdentifierType::PhoneNumber,
    ];

    /// Returns the name used in configuration files, the same as the serde name.
    pub fn config_name(self) -> &'static str {
        match self {
            IdentifierType::Email => "email",
            IdentifierType::Madid => "madid",
            IdentifierType::IdentityLink => "identityLink",
            IdentifierType::Gum => "gum",
            IdentifierType::CustomerId => "customerid",
            IdentifierType::PhoneNumber => "phoneNumber",
        }
    }

    /// Parses a configuration name, matching it exactly and case-sensitively.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.config_name() == name)
    }

    /// Returns the `identifierType` of Marketing Solutions contact lists, or `None` for
    /// [`IdentifierType::CustomerId`], which only Retail Media lists accept.
    pub fn marketing_solutions_name(self) -> Option<&'static str> {
        match self {
            IdentifierType::CustomerId => None,
            other => Some(other.config_name()),
        }
    }

    /// Returns the identifier type name of Retail Media customer lists.
    pub fn retail_media_name(self) -> &'static str {
        match self {
            IdentifierType::Email => "Email",
            IdentifierType::Madid => "UserIdentifier",
            IdentifierType::IdentityLink => "IdentityLink",
            IdentifierType::Gum => "Gum",
            IdentifierType::CustomerId => "CustomerId",
            IdentifierType::PhoneNumber => "PhoneNumber",
        }
    }

    /// Returns true for the types sent as SHA-256 digests (email and phone number).
    pub fn is_hashed(self) -> bool {
        matches!(self, IdentifierType::Email | IdentifierType::PhoneNumber)
    }

    /// Returns true for the types that may also be read from integer columns.
    fn accepts_integers(self) -> bool {
        matches!(
            self,
            IdentifierType::IdentityLink | IdentifierType::Gum | IdentifierType::CustomerId
        )
    }
}

impl fmt::Display for IdentifierType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.config_name())
    }
}

/// Settings that change how values are normalized.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NormalizeOptions {
    /// Region of phone numbers written without a country code, as an ISO 3166-1 alpha-2
    /// code (`"FR"`, any case). Without it such numbers are invalid (`no_country_code`).
    pub default_country: Option<String>,
}

/// Error of setting up a [`Normalizer`] or feeding it a column.
///
/// Invalid values are not errors: they are counted in [`NormalizedIdentifiers::invalid`].
#[derive(Debug, thiserror::Error)]
pub enum IdentifierError {
    /// `default_country` is not a region code with a telephone calling code.
    #[error(
        "invalid default_country {value:?}: expected an ISO 3166-1 alpha-2 region code \
         that has a telephone calling code, such as \"FR\", \"DE\", \"US\" or \"GB\""
    )]
    UnknownDefaultCountry {
        /// The configured value.
        value: String,
    },

    /// The column's Arrow type cannot hold identifiers of this type.
    #[error(
        "cannot read {identifier_type} identifiers from an Arrow column of type {data_type}: \
         accepted types are {accepted}"
    )]
    UnsupportedColumnType {
        /// Identifier type the column was mapped to.
        identifier_type: IdentifierType,
        /// Arrow type of the column.
        data_type: DataType,
        /// Arrow types accepted for this identifier type.
        accepted: &'static str,
    },
}

/// Reason a non-null value was rejected; [`InvalidReason::as_str`] is its report key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InvalidReason {
    /// Nothing left after trimming whitespace.
    Empty,
    /// Email without exactly one `@`, with an empty local part, or with a domain that is
    /// not dotted or has an empty label.
    Malformed,
    /// Email with whitespace between its first and last character.
    InnerWhitespace,
    /// Mobile advertising id that is not a UUID `8-4-4-4-12` in hex.
    NotAUuid,
    /// Mobile advertising id made of zeros only. iOS and Android report it for every user
    /// who limited ad tracking, so it identifies no one in particular.
    ZeroUuid,
    /// Phone number with a character other than digits, a leading `+`, whitespace, `.`,
    /// `-`, `/`, `(` or `)`.
    InvalidCharacter,
    /// Phone number without `+` or `00` and without a configured default country.
    NoCountryCode,
    /// Phone number whose digits after `+` or `00` start with no assigned calling code.
    UnknownCountryCode,
    /// Phone number whose national number has a length, or a first digit, that its country
    /// does not use.
    WrongLength,
}

impl InvalidReason {
    /// Every reason, in declaration order.
    pub const ALL: [InvalidReason; 9] = [
        InvalidReason::Empty,
        InvalidReason::Malformed,
        InvalidReason::InnerWhitespace,
        InvalidReason::NotAUuid,
        InvalidReason::ZeroUuid,
        InvalidReason::InvalidCharacter,
        InvalidReason::NoCountryCode,
        InvalidReason::UnknownCountryCode,
        InvalidReason::WrongLength,
    ];

    /// Returns the key counted in [`NormalizedIdentifiers::invalid`].
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::Empty => "empty",
            InvalidReason::Malformed => "malformed",
            InvalidReason::InnerWhitespace => "inner_whitespace",
            InvalidReason::NotAUuid => "not_a_uuid",
            InvalidReason::ZeroUuid => "zero_uuid",
            InvalidReason::InvalidCharacter => "invalid_character",
            InvalidReason::NoCountryCode => "no_country_code",
            InvalidReason::UnknownCountryCode => "unknown_country_code",
            InvalidReason::WrongLength => "wrong_length",
        }
    }
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Canonical form of one email or phone value, as left by a normalize function.
#[derive(Debug, PartialEq, Eq)]
enum Normalized {
    /// The normalized text is in the output buffer and still has to be hashed.
    Text,
    /// The value already was a SHA-256 digest.
    Digest([u8; 32]),
}

/// Returns true for the characters trimmed from both ends of every value: Unicode
/// whitespace and the byte order mark.
fn is_blank(c: char) -> bool {
    c.is_whitespace() || c == '\u{FEFF}'
}

/// Returns the value without leading and trailing [`is_blank`] characters.
fn trim(value: &str) -> &str {
    value.trim_matches(is_blank)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_round_trip() {
        for t in IdentifierType::ALL {
            assert_eq!(IdentifierType::parse(t.config_name()), Some(t));
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.config_name()));
            assert_eq!(serde_json::from_str::<IdentifierType>(&json).unwrap(), t);
        }
        assert_eq!(IdentifierType::parse("Email"), None);
        assert_eq!(IdentifierType::parse("phone"), None);
    }

    #[test]
    fn destination_names() {
        use IdentifierType::*;
        let expected = [
            (Email, Some("email"), "Email"),
            (Madid, Some("madid"), "UserIdentifier"),
            (IdentityLink, Some("identityLink"), "IdentityLink"),
            (Gum, Some("gum"), "Gum"),
            (CustomerId, None, "CustomerId"),
            (PhoneNumber, Some("phoneNumber"), "PhoneNumber"),
        ];
        for (t, marketing, retail) in expected {
            assert_eq!(t.marketing_solutions_name(), marketing, "{t}");
            assert_eq!(t.retail_media_name(), retail, "{t}");
        }
    }

    #[test]
    fn hashed_types() {
        let hashed: Vec<_> = IdentifierType::ALL
            .into_iter()
            .filter(|t| t.is_hashed())
            .collect();
        assert_eq!(hashed, [IdentifierType::Email, IdentifierType::PhoneNumber]);
    }

    #[test]
    fn reason_keys_unique() {
        let mut keys: Vec<_> = InvalidReason::ALL.iter().map(|r| r.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), InvalidReason::ALL.len());
    }

    #[test]
    fn trim_unicode_blanks() {
        assert_eq!(trim("\u{FEFF}\u{00A0}\u{2003}\u{3000} a b \t\r\n"), "a b");
        assert_eq!(
            trim("\u{200B}a"),
            "\u{200B}a",
            "zero-width space is not whitespace"
        );
    }
}
