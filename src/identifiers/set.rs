//! Sorted, deduplicated identifier sets and the counts that come with them.

use std::collections::BTreeMap;
use std::fmt;

use super::IdentifierType;

/// Sorted, deduplicated identifiers of one type.
///
/// Hashed identifiers are SHA-256 digests, kept as bytes until they are written out with
/// [`write_hex`](super::write_hex). Clear identifiers are sorted by their UTF-8 bytes.
/// `Debug` prints the variant and the length only, never the identifiers.
#[derive(Clone, PartialEq, Eq)]
pub enum IdentifierSet {
    /// SHA-256 digests of emails or phone numbers.
    Hashed(Vec<[u8; 32]>),
    /// Identifiers sent in clear (madid, identityLink, gum, customerid).
    Clear(Vec<Box<str>>),
}

impl IdentifierSet {
    /// Returns the number of identifiers.
    pub fn len(&self) -> usize {
        match self {
            IdentifierSet::Hashed(digests) => digests.len(),
            IdentifierSet::Clear(values) => values.len(),
        }
    }

    /// Returns true when the set has no identifiers.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns an empty set of the variant used for identifiers of type `t`.
    pub fn empty_for(t: IdentifierType) -> Self {
        if t.is_hashed() {
            IdentifierSet::Hashed(Vec::new())
        } else {
            IdentifierSet::Clear(Vec::new())
        }
    }
}

impl fmt::Debug for IdentifierSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            IdentifierSet::Hashed(_) => "Hashed",
            IdentifierSet::Clear(_) => "Clear",
        };
        f.debug_struct(name)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// Identifiers of one type read from a segment, with the counts for the run report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormalizedIdentifiers {
    /// Type of every identifier in `set`.
    pub identifier_type: IdentifierType,
    /// Valid identifiers, sorted and deduplicated.
    pub set: IdentifierSet,
    /// Non-null values read, valid or not, before deduplication.
    pub values: u64,
    /// Null values read, which mean "no value" and are not counted as invalid.
    pub nulls: u64,
    /// Invalid values per reason key ([`InvalidReason::as_str`](super::InvalidReason::as_str));
    /// reasons that never occurred are absent.
    pub invalid: BTreeMap<&'static str, u64>,
}

impl NormalizedIdentifiers {
    /// Returns the number of invalid values over all reasons.
    pub fn invalid_total(&self) -> u64 {
        self.invalid.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_values() {
        let digest = [0xab; 32];
        let hashed = IdentifierSet::Hashed(vec![digest, [0xcd; 32]]);
        assert_eq!(format!("{hashed:?}"), "Hashed { len: 2, .. }");

        let clear = IdentifierSet::Clear(vec!["3f097372-f01e-4b64-984c-395ae5828ee6".into()]);
        let printed = format!("{clear:#?}");
        assert!(!printed.contains("3f09"), "{printed}");
        assert!(printed.contains("len: 1"), "{printed}");
    }

    #[test]
    fn empty_for_each_type() {
        for t in IdentifierType::ALL {
            let set = IdentifierSet::empty_for(t);
            assert!(set.is_empty());
            assert_eq!(
                matches!(set, IdentifierSet::Hashed(_)),
                t.is_hashed(),
                "{t}"
            );
        }
    }
}
