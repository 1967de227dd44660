//! Diff of sorted identifier sets: who entered, who left, and the snapshot after delivery.
//!
//! Every set here is sorted and free of duplicates, so each operation is one merge pass:
//! linear time, no hashing, and deterministic output.
//!
//! ```text
//!  previous:  a  b  c     e
//!  current:      b  c  d  e  f
//!             ─────────────────
//!  removes:   a
//!  adds:               d     f
//!  unchanged:    b  c     e
//! ```

use std::cmp::Ordering;

use crate::identifiers::{IdentifierSet, IdentifierType};

/// Changes of one identifier type: adds, removes and the count left unchanged.
#[derive(Clone, Debug)]
pub struct TypeDiff {
    pub identifier_type: IdentifierType,
    pub adds: IdentifierSet,
    pub removes: IdentifierSet,
    pub unchanged: u64,
}

/// Compares the current identifiers with the previous snapshot of one type.
pub fn diff(
    identifier_type: IdentifierType,
    current: &IdentifierSet,
    previous: &IdentifierSet,
) -> TypeDiff {
    match (current, previous) {
        (IdentifierSet::Hashed(current), IdentifierSet::Hashed(previous)) => {
            let (adds, removes, unchanged) = diff_sorted(current, previous);
            TypeDiff {
                identifier_type,
                adds: IdentifierSet::Hashed(adds),
                removes: IdentifierSet::Hashed(removes),
                unchanged,
            }
        }
        (IdentifierSet::Clear(current), IdentifierSet::Clear(previous)) => {
            let (adds, removes, unchanged) = diff_sorted(current, previous);
            TypeDiff {
                identifier_type,
                adds: IdentifierSet::Clear(adds),
                removes: IdentifierSet::Clear(removes),
                unchanged,
            }
        }
        _ => unreachable!("identifier sets of one type always share a representation"),
    }
}

/// Returns `(current - previous, previous - current, |current ∩ previous|)`.
pub fn diff_sorted<T: Ord + Clone>(current: &[T], previous: &[T]) -> (Vec<T>, Vec<T>, u64) {
    let mut adds = Vec::new();
    let mut removes = Vec::new();
    let mut unchanged = 0u64;
    let (mut i, mut j) = (0, 0);
    while i < current.len() && j < previous.len() {
        match current[i].cmp(&previous[j]) {
            Ordering::Less => {
                adds.push(current[i].clone());
                i += 1;
            }
            Ordering::Greater => {
                removes.push(previous[j].clone());
                j += 1;
            }
            Ordering::Equal => {
                unchanged += 1;
                i += 1;
                j += 1;
            }
        }
    }
    adds.extend_from_slice(&current[i..]);
    removes.extend_from_slice(&previous[j..]);
    (adds, removes, unchanged)
}

/// Returns `(previous - removed) ∪ added`: the snapshot after the acknowledged changes.
pub fn apply_sorted<T: Ord + Clone>(previous: &[T], added: &[T], removed: &[T]) -> Vec<T> {
    let mut out = Vec::with_capacity(previous.len() + added.len());
    let mut removed = removed.iter().peekable();
    let mut added = added.iter().peekable();
    for value in previous {
        while removed.next_if(|candidate| *candidate < value).is_some() {}
        if removed.next_if(|candidate| *candidate == value).is_some() {
            continue;
        }
        while let Some(new) = added.next_if(|candidate| *candidate < value) {
            out.push(new.clone());
        }
        added.next_if(|candidate| *candidate == value);
        out.push(value.clone());
    }
    out.extend(added.cloned());
    out
}

/// Applies acknowledged adds and removes to a snapshot set of one type.
pub fn apply(previous: &IdentifierSet, added: &IdentifierSet, removed: &IdentifierSet) -> IdentifierSet {
    match (previous, added, removed) {
        (IdentifierSet::Hashed(p), IdentifierSet::Hashed(a), IdentifierSet::Hashed(r)) => {
            IdentifierSet::Hashed(apply_sorted(p, a, r))
        }
        (IdentifierSet::Clear(p), IdentifierSet::Clear(a), IdentifierSet::Clear(r)) => {
            IdentifierSet::Clear(apply_sorted(p, a, r))
        }
        _ => unreachable!("identifier sets of one type always share a representation"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn diff_splits_adds_removes_unchanged() {
        let (adds, removes, unchanged) = diff_sorted(&[2, 3, 4, 5, 6], &[1, 2, 3, 5]);
        assert_eq!(adds, vec![4, 6]);
        assert_eq!(removes, vec![1]);
        assert_eq!(unchanged, 3);
    }

    #[test]
    fn diff_of_empty_previous_adds_everything() {
        let (adds, removes, unchanged) = diff_sorted(&[1, 2], &[]);
        assert_eq!(adds, vec![1, 2]);
        assert!(removes.is_empty());
        assert_eq!(unchanged, 0);
    }

    #[test]
    fn apply_merges_acknowledged_changes() {
        let next = apply_sorted(&[1, 3, 5, 7], &[2, 8], &[3, 7]);
        assert_eq!(next, vec![1, 2, 5, 8]);
    }

    fn sorted_set() -> impl Strategy<Value = Vec<u16>> {
        proptest::collection::btree_set(0u16..500, 0..200).prop_map(|set| set.into_iter().collect())
    }

    proptest! {
        #[test]
        fn diff_matches_set_algebra(current in sorted_set(), previous in sorted_set()) {
            let (adds, removes, unchanged) = diff_sorted(&current, &previous);
            let c: BTreeSet<_> = current.iter().copied().collect();
            let p: BTreeSet<_> = previous.iter().copied().collect();
            prop_assert_eq!(adds, c.difference(&p).copied().collect::<Vec<_>>());
            prop_assert_eq!(removes, p.difference(&c).copied().collect::<Vec<_>>());
            prop_assert_eq!(unchanged as usize, c.intersection(&p).count());
        }

        #[test]
        fn applying_full_diff_gives_current(current in sorted_set(), previous in sorted_set()) {
            let (adds, removes, _) = diff_sorted(&current, &previous);
            prop_assert_eq!(apply_sorted(&previous, &adds, &removes), current);
        }

        #[test]
        fn applying_part_keeps_unacknowledged(current in sorted_set(), previous in sorted_set(), cut in 0usize..200) {
            // Only a prefix of each list was acknowledged: the rest must stay as before.
            let (adds, removes, _) = diff_sorted(&current, &previous);
            let acked_adds = &adds[..cut.min(adds.len())];
            let acked_removes = &removes[..cut.min(removes.len())];
            let next = apply_sorted(&previous, acked_adds, acked_removes);
            let expected: BTreeSet<_> = previous.iter().copied()
                .filter(|value| !acked_removes.contains(value))
                .chain(acked_adds.iter().copied())
                .collect();
            prop_assert_eq!(next, expected.into_iter().collect::<Vec<_>>());
        }
    }
}
