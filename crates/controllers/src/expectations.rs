//! Controller expectations: after asking for N creates or some deletes, a controller waits until
//! its cache has seen them before computing another diff, so a lagging cache never makes it
//! create twice (upstream's ControllerExpectations, with the same 5-minute expiry).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::queue::Key;

/// After this long an unmet expectation is dropped: a lost watch event must not wedge a set.
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Expectation {
    adds: i64,
    deletes: HashSet<String>,
    set_at: Instant,
}

/// Pending creates and deletes per controller key.
#[derive(Default)]
pub struct Expectations {
    // One entry per controller object that is mid-change; removed when the object goes.
    inner: Mutex<HashMap<Key, Expectation>>,
}

impl Expectations {
    /// No expectations.
    pub fn new() -> Expectations {
        Expectations::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<Key, Expectation>) -> T) -> T {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// Whether the controller may compute a new diff for `key`.
    pub fn satisfied(&self, key: &Key) -> bool {
        self.with(|m| match m.get(key) {
            None => true,
            Some(e) => {
                (e.adds <= 0 && e.deletes.is_empty()) || e.set_at.elapsed() > EXPECTATIONS_TIMEOUT
            }
        })
    }

    /// Expect `n` pod creations to show up.
    pub fn expect_creations(&self, key: &Key, n: usize) {
        self.with(|m| {
            m.insert(
                key.clone(),
                Expectation {
                    adds: i64::try_from(n).unwrap_or(i64::MAX),
                    deletes: HashSet::new(),
                    set_at: Instant::now(),
                },
            );
        });
    }

    /// Expect these pods to disappear (or get a deletionTimestamp).
    pub fn expect_deletions(&self, key: &Key, names: impl IntoIterator<Item = String>) {
        self.with(|m| {
            m.insert(
                key.clone(),
                Expectation {
                    adds: 0,
                    deletes: names.into_iter().collect(),
                    set_at: Instant::now(),
                },
            );
        });
    }

    /// One expected creation was seen (or will never happen because it failed).
    pub fn creation_observed(&self, key: &Key) {
        self.with(|m| {
            if let Some(e) = m.get_mut(key) {
                e.adds -= 1;
            }
        });
    }

    /// `name` was seen deleted (or its delete failed).
    pub fn deletion_observed(&self, key: &Key, name: &str) {
        self.with(|m| {
            if let Some(e) = m.get_mut(key) {
                e.deletes.remove(name);
            }
        });
    }

    /// Forget `key` (its controller object is gone).
    pub fn forget(&self, key: &Key) {
        self.with(|m| {
            m.remove(key);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn unmet_expectations_block_until_observed_or_expired() {
        let e = Expectations::new();
        let k = Key::new("ns", "rs");
        assert!(e.satisfied(&k));
        e.expect_creations(&k, 2);
        assert!(!e.satisfied(&k));
        e.creation_observed(&k);
        assert!(!e.satisfied(&k));
        e.creation_observed(&k);
        assert!(e.satisfied(&k));
        e.expect_deletions(&k, ["p1".to_string()]);
        assert!(!e.satisfied(&k));
        tokio::time::advance(EXPECTATIONS_TIMEOUT + Duration::from_secs(1)).await;
        assert!(e.satisfied(&k), "expired");
    }
}
