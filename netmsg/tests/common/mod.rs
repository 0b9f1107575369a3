//! Shared by the randomized two-node release tests.

use std::collections::{BTreeMap, VecDeque};

/// The streams (by export ID) with something queued, in ID order.
pub(crate) fn busy_streams<T>(streams: &BTreeMap<u64, VecDeque<T>>) -> Vec<u64> {
    streams
        .iter()
        .filter(|(_, q)| !q.is_empty())
        .map(|(&id, _)| id)
        .collect()
}

/// A xorshift step: a number below `n` (0 when `n` is 0).
pub(crate) fn below(state: &mut u64, n: usize) -> usize {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state % n.max(1) as u64) as usize
}

/// One of `ids`, chosen by `state`.
pub(crate) fn pick(state: &mut u64, ids: &[u64]) -> Option<u64> {
    (!ids.is_empty()).then(|| ids[below(state, ids.len())])
}
