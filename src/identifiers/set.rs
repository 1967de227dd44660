//! Sorted, deduplicated identifier sets and the counts that come with them.

use std::cmp::Ordering;
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

    /// Adds the identifiers of `other`, keeping the set sorted and deduplicated.
    ///
    /// Both sets are already sorted, so this is one linear merge rather than a new sort.
    ///
    /// # Panics
    ///
    /// Panics if one set is hashed and the other clear, which means they belong to
    /// different identifier types.
    pub fn merge(&mut self, other: IdentifierSet) {
        match (self, other) {
            (IdentifierSet::Hashed(all), IdentifierSet::Hashed(more)) => {
                *all = merge_sorted(std::mem::take(all), more);
            }
            (IdentifierSet::Clear(all), IdentifierSet::Clear(more)) => {
                *all = merge_sorted(std::mem::take(all), more);
            }
            _ => panic!("cannot merge a hashed identifier set with a clear one"),
        }
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

/// Merges two sorted, deduplicated vectors into one.
fn merge_sorted<T: Ord>(left: Vec<T>, right: Vec<T>) -> Vec<T> {
    if left.is_empty() {
        return right;
    }
    if right.is_empty() {
        return left;
    }

    let mut merged = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let next = match (left.peek(), right.peek()) {
            (Some(a), Some(b)) => match a.cmp(b) {
                Ordering::Less => left.next(),
                Ordering::Greater => right.next(),
                Ordering::Equal => {
                    right.next();
                    left.next()
                }
            },
            (Some(_), None) => left.next(),
            (None, Some(_)) => right.next(),
            (None, None) => break,
        };
        merged.extend(next);
    }
    merged
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
    /// Invalid values per reason key ([`InvalidReason::as_str`](super::InvalidReason::as_str)).
    /// Reasons that never occurred are absent.
    pub invalid: BTreeMap<&'static str, u64>,
}

impl NormalizedIdentifiers {
    /// Adds the identifiers and counts of `other`, such as the result of normalizing
    /// another partition of the same segment.
    ///
    /// # Panics
    ///
    /// Panics if `other` has a different identifier type.
    pub fn merge(&mut self, other: NormalizedIdentifiers) {
        assert_eq!(
            self.identifier_type, other.identifier_type,
            "cannot merge identifiers of different types"
        );
        self.set.merge(other.set);
        self.values += other.values;
        self.nulls += other.nulls;
        for (reason, count) in other.invalid {
            *self.invalid.entry(reason).or_default() += count;
        }
    }

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

    fn clear(values: &[&str]) -> IdentifierSet {
        IdentifierSet::Clear(values.iter().map(|&v| v.into()).collect())
    }

    #[test]
    fn merge_sets() {
        let mut set = clear(&["a", "c", "e"]);
        set.merge(clear(&["b", "c", "f"]));
        assert_eq!(set, clear(&["a", "b", "c", "e", "f"]));

        set.merge(clear(&[]));
        assert_eq!(set.len(), 5);

        let mut empty = clear(&[]);
        empty.merge(clear(&["z"]));
        assert_eq!(empty, clear(&["z"]));

        let mut hashed = IdentifierSet::Hashed(vec![[1; 32], [3; 32]]);
        hashed.merge(IdentifierSet::Hashed(vec![[0; 32], [3; 32], [4; 32]]));
        assert_eq!(
            hashed,
            IdentifierSet::Hashed(vec![[0; 32], [1; 32], [3; 32], [4; 32]])
        );
    }

    #[test]
    #[should_panic(expected = "hashed identifier set with a clear one")]
    fn merge_rejects_mixed_sets() {
        let mut hashed = IdentifierSet::Hashed(vec![[1; 32]]);
        hashed.merge(clear(&["a"]));
    }

    #[test]
    fn merge_adds_counts() {
        let part = |value: &str, values, nulls, empty| NormalizedIdentifiers {
            identifier_type: IdentifierType::CustomerId,
            set: clear(&[value]),
            values,
            nulls,
            invalid: BTreeMap::from([("empty", empty)]),
        };
        let mut total = part("a", 3, 1, 2);
        total.merge(part("b", 4, 0, 1));
        assert_eq!(total.set, clear(&["a", "b"]));
        assert_eq!((total.values, total.nulls), (7, 1));
        assert_eq!(total.invalid, BTreeMap::from([("empty", 3)]));
    }

    proptest::proptest! {
        #[test]
        fn merge_equals_resort(
            mut left in proptest::collection::vec(0u8..40, 0..30),
            mut right in proptest::collection::vec(0u8..40, 0..30),
        ) {
            let mut expected: Vec<u8> = left.iter().chain(&right).copied().collect();
            expected.sort_unstable();
            expected.dedup();
            for side in [&mut left, &mut right] {
                side.sort_unstable();
                side.dedup();
            }
            proptest::prop_assert_eq!(merge_sorted(left, right), expected);
        }
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
