//! Identifier types of contact lists, their names in both APIs, and the format check that
//! decides whether an identifier counts as valid.

/// Kind of identifier a contact-list amendment carries.
///
/// Marketing Solutions names the types in camelCase (`email`, `madid`); Retail Media uses
/// PascalCase and calls mobile advertising ids `UserIdentifier`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum IdentifierType {
    Email,
    Madid,
    IdentityLink,
    Gum,
    PhoneNumber,
    CustomerId,
}

/// Every type, in the order the sandbox lists members.
pub(crate) const ALL_IDENTIFIER_TYPES: [IdentifierType; 6] = [
    IdentifierType::Email,
    IdentifierType::Madid,
    IdentifierType::IdentityLink,
    IdentifierType::Gum,
    IdentifierType::PhoneNumber,
    IdentifierType::CustomerId,
];

/// Names a Marketing Solutions amendment accepts in `identifierType`.
pub(crate) const MARKETING_TYPE_NAMES: &str = "email, madid, identityLink, gum, phoneNumber";
/// Names a Retail Media amendment accepts in `identifierType`.
pub(crate) const RETAIL_TYPE_NAMES: &str =
    "Email, UserIdentifier, IdentityLink, Gum, CustomerId, PhoneNumber";
/// Names a Retail Media segment accepts as its `contactList.identifierType`.
pub(crate) const RETAIL_LIST_TYPE_NAMES: &str =
    "Email, UserIdentifier, IdentityLink, CustomerId, PhoneNumber";

impl IdentifierType {
    /// Returns the Marketing Solutions name, or `None` for `CustomerId`, which Marketing
    /// Solutions amendments accepted only up to version 2023-07.
    pub(crate) fn marketing_name(self) -> Option<&'static str> {
        match self {
            IdentifierType::Email => Some("email"),
            IdentifierType::Madid => Some("madid"),
            IdentifierType::IdentityLink => Some("identityLink"),
            IdentifierType::Gum => Some("gum"),
            IdentifierType::PhoneNumber => Some("phoneNumber"),
            IdentifierType::CustomerId => None,
        }
    }

    pub(crate) fn retail_name(self) -> &'static str {
        match self {
            IdentifierType::Email => "Email",
            IdentifierType::Madid => "UserIdentifier",
            IdentifierType::IdentityLink => "IdentityLink",
            IdentifierType::Gum => "Gum",
            IdentifierType::PhoneNumber => "PhoneNumber",
            IdentifierType::CustomerId => "CustomerId",
        }
    }

    pub(crate) fn from_marketing_name(name: &str) -> Option<Self> {
        ALL_IDENTIFIER_TYPES
            .into_iter()
            .find(|kind| kind.marketing_name() == Some(name))
    }

    pub(crate) fn from_retail_name(name: &str) -> Option<Self> {
        ALL_IDENTIFIER_TYPES
            .into_iter()
            .find(|kind| kind.retail_name() == name)
    }

    /// Parses a name of either API, for the Rust and admin interfaces.
    pub(crate) fn from_any_name(name: &str) -> Option<Self> {
        Self::from_marketing_name(name).or_else(|| Self::from_retail_name(name))
    }

    /// Checks that a Retail Media segment may declare this type for its list. Criteo's
    /// specification allows `Gum` in amendments but not on segments.
    pub(crate) fn is_retail_list_type(self) -> bool {
        self != IdentifierType::Gum
    }

    /// Checks that `identifier` has the format of this type.
    ///
    /// The rules are the sandbox's own, because Criteo publishes none beyond the accepted
    /// hash forms:
    /// - email: a plain address (one `@`, a dot inside the domain, no whitespace) or 32 or
    ///   64 lowercase hex digits (MD5, SHA-256, SHA-256 of MD5).
    /// - madid: a UUID in 8-4-4-4-12 hex form, either case.
    /// - phone number: E.164 (`+` and 7 to 15 digits) or 64 lowercase hex digits.
    /// - identityLink, gum, customer id: any text that is not blank.
    pub(crate) fn accepts(self, identifier: &str) -> bool {
        match self {
            IdentifierType::Email => {
                is_lower_hex(identifier, 64)
                    || is_lower_hex(identifier, 32)
                    || is_plain_email(identifier)
            }
            IdentifierType::Madid => is_uuid(identifier),
            IdentifierType::PhoneNumber => is_lower_hex(identifier, 64) || is_e164(identifier),
            IdentifierType::IdentityLink | IdentifierType::Gum | IdentifierType::CustomerId => {
                !identifier.trim().is_empty()
            }
        }
    }
}

fn is_lower_hex(text: &str, length: usize) -> bool {
    text.len() == length && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_plain_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    let domain_has_inner_dot = domain
        .find('.')
        .is_some_and(|dot| dot > 0 && !domain.ends_with('.'));

    !local.is_empty()
        && !domain.contains('@')
        && domain_has_inner_dot
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn is_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

fn is_e164(text: &str) -> bool {
    let Some(digits) = text.strip_prefix('+') else {
        return false;
    };
    (7..=15).contains(&digits.len())
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256: &str = "375320dd9ae7ed408002f3768e16cb5f28c861062fd50dff9a3bff62e9dce4ef";
    const MD5: &str = "e13743a7f1db7f4246badd6fd6ff54ff";

    #[test]
    fn email_accepts_hashes_and_addresses() {
        for valid in [SHA256, MD5, "john.doe@gmail.com", "a@b.co"] {
            assert!(IdentifierType::Email.accepts(valid), "{valid}");
        }
    }

    #[test]
    fn email_rejects_malformed_values() {
        let uppercase = SHA256.to_uppercase();
        let cases = [
            "jkl@gmail",
            "not-an-email@",
            "@example.com",
            "a@.com",
            "a@example.",
            "a b@example.com",
            "a@b@example.com",
            "",
            &SHA256[..63],
            &uppercase,
        ];
        for invalid in cases {
            assert!(!IdentifierType::Email.accepts(invalid), "{invalid}");
        }
    }

    #[test]
    fn madid_requires_uuid_form() {
        assert!(IdentifierType::Madid.accepts("3f097372-f01e-4b64-984c-395ae5828ee6"));
        assert!(IdentifierType::Madid.accepts("3F097372-F01E-4B64-984C-395AE5828EE6"));
        assert!(!IdentifierType::Madid.accepts("3f097372f01e4b64984c395ae5828ee6"));
        assert!(!IdentifierType::Madid.accepts("3f097372-f01e-4b64-984c-395ae5828eeg"));
    }

    #[test]
    fn phone_number_requires_e164_or_sha256() {
        assert!(IdentifierType::PhoneNumber.accepts("+33612345678"));
        assert!(IdentifierType::PhoneNumber.accepts(SHA256));
        assert!(!IdentifierType::PhoneNumber.accepts("0612345678"));
        assert!(!IdentifierType::PhoneNumber.accepts("+0612345678"));
        assert!(!IdentifierType::PhoneNumber.accepts("+1234567890123456"));
    }

    #[test]
    fn free_form_types_reject_blank_text() {
        for kind in [
            IdentifierType::IdentityLink,
            IdentifierType::Gum,
            IdentifierType::CustomerId,
        ] {
            assert!(kind.accepts("C-100234"), "{kind:?}");
            assert!(!kind.accepts("  "), "{kind:?}");
        }
    }

    #[test]
    fn names_round_trip_in_both_apis() {
        for kind in ALL_IDENTIFIER_TYPES {
            assert_eq!(
                IdentifierType::from_retail_name(kind.retail_name()),
                Some(kind)
            );
            if let Some(name) = kind.marketing_name() {
                assert_eq!(IdentifierType::from_marketing_name(name), Some(kind));
            }
        }
        assert_eq!(IdentifierType::from_marketing_name("customerid"), None);
        assert_eq!(IdentifierType::from_marketing_name("Email"), None);
        assert_eq!(
            IdentifierType::from_any_name("UserIdentifier"),
            Some(IdentifierType::Madid)
        );
    }
}
