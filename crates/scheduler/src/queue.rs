//! The scheduling queue: active (PrioritySort: priority, then arrival), backoff (1 s doubling to
//! 10 s) and unschedulable sub-queues. A pod in unschedulable remembers the plugins that
//! rejected it, so a cluster event moves only the pods whose queueing hints say it may help
//! (`move_if`). IO-free and clock-free: callers pass `now`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::time::{Duration, Instant};

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Pods left in the unschedulable queue longer than this are retried anyway.
pub const MAX_UNSCHEDULABLE_DURATION: Duration = Duration::from_secs(300);

/// Where a pod sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Active,
    Backoff,
    Unschedulable,
    /// Popped and being scheduled.
    InFlight,
}

#[derive(Debug)]
struct Entry<T> {
    item: T,
    priority: i32,
    /// When the pod (re-)entered the queue: the tie-breaker of PrioritySort.
    timestamp: Instant,
    attempts: u32,
    last_failure: Option<Instant>,
    /// The move-request cycle at the time the pod was popped.
    popped_at_cycle: u64,
    location: Location,
    seq: u64,
    /// Plugins that rejected the pod in its last failed cycle (empty: any event may help).
    rejectors: Vec<&'static str>,
}

#[derive(PartialEq, Eq)]
struct ActiveKey {
    priority: i32,
    timestamp: Instant,
    seq: u64,
    key: String,
}

impl Ord for ActiveKey {
    fn cmp(&self, o: &Self) -> Ordering {
        // BinaryHeap pops the greatest: higher priority, then older, then lower seq.
        self.priority
            .cmp(&o.priority)
            .then_with(|| o.timestamp.cmp(&self.timestamp))
            .then_with(|| o.seq.cmp(&self.seq))
    }
}
impl PartialOrd for ActiveKey {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// The queue of pods waiting to be scheduled, keyed by `namespace/name`.
pub struct SchedulingQueue<T> {
    entries: HashMap<String, Entry<T>>,
    active: BinaryHeap<ActiveKey>,
    /// ready-at → keys.
    backoff: BTreeMap<(Instant, u64), String>,
    /// Keys of the pods in unschedulable, so an event visits only them.
    unschedulable: HashSet<String>,
    seq: u64,
    move_request_cycle: u64,
    scheduling_cycle: u64,
}

impl<T> Default for SchedulingQueue<T> {
    fn default() -> Self {
        SchedulingQueue {
            entries: HashMap::new(),
            active: BinaryHeap::new(),
            backoff: BTreeMap::new(),
            unschedulable: HashSet::new(),
            seq: 0,
            move_request_cycle: 0,
            scheduling_cycle: 0,
        }
    }
}

/// Backoff after `attempts` failures: 1 s, 2 s, 4 s, 8 s, 10 s, 10 s, …
pub fn backoff_duration(attempts: u32) -> Duration {
    let mut d = INITIAL_BACKOFF;
    for _ in 1..attempts {
        d = d.saturating_mul(2);
        if d >= MAX_BACKOFF {
            return MAX_BACKOFF;
        }
    }
    d.min(MAX_BACKOFF)
}

impl<T> SchedulingQueue<T> {
    pub fn new() -> Self {
        Self::default()
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn push_active(&mut self, key: &str) {
        let seq = self.next_seq();
        self.unschedulable.remove(key);
        if let Some(e) = self.entries.get_mut(key) {
            e.location = Location::Active;
            e.seq = seq;
            self.active.push(ActiveKey {
                priority: e.priority,
                timestamp: e.timestamp,
                seq,
                key: key.to_string(),
            });
        }
    }

    fn push_backoff(&mut self, key: &str, ready: Instant) {
        let seq = self.next_seq();
        self.unschedulable.remove(key);
        if let Some(e) = self.entries.get_mut(key) {
            e.location = Location::Backoff;
            e.seq = seq;
            self.backoff.insert((ready, seq), key.to_string());
        }
    }

    fn backoff_ready_at(e: &Entry<T>) -> Option<Instant> {
        e.last_failure.map(|t| t + backoff_duration(e.attempts))
    }

    /// A new pending pod (or one re-added after an update): straight to active.
    pub fn add(&mut self, key: String, item: T, priority: i32, now: Instant) {
        if let Some(e) = self.entries.get_mut(&key) {
            e.item = item;
            e.priority = priority;
            // An update may make an unschedulable pod schedulable: retry it (after backoff).
            if e.location == Location::Unschedulable {
                match Self::backoff_ready_at(e).filter(|r| *r > now) {
                    Some(ready) => self.push_backoff(&key, ready),
                    None => self.push_active(&key),
                }
            }
            return;
        }
        self.entries.insert(
            key.clone(),
            Entry {
                item,
                priority,
                timestamp: now,
                attempts: 0,
                last_failure: None,
                popped_at_cycle: 0,
                location: Location::Active,
                seq: 0,
                rejectors: Vec::new(),
            },
        );
        self.push_active(&key);
    }

    /// Forgets a pod (deleted, or scheduled by someone else).
    pub fn delete(&mut self, key: &str) {
        // Heap and backoff entries are dropped lazily when their seq no longer matches.
        self.entries.remove(key);
        self.unschedulable.remove(key);
    }

    fn flush_backoff(&mut self, now: Instant) {
        while let Some((&(ready, seq), _)) = self.backoff.iter().next() {
            if ready > now {
                break;
            }
            let Some(key) = self.backoff.remove(&(ready, seq)) else {
                break;
            };
            if self
                .entries
                .get(&key)
                .is_some_and(|e| e.seq == seq && e.location == Location::Backoff)
            {
                self.push_active(&key);
            }
        }
    }

    /// Moves pods stuck in unschedulable longer than `MAX_UNSCHEDULABLE_DURATION` back.
    pub fn flush_unschedulable_leftover(&mut self, now: Instant) {
        let stale: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|k| {
                self.entries.get(*k).is_some_and(|e| {
                    e.last_failure
                        .is_some_and(|t| now.duration_since(t) >= MAX_UNSCHEDULABLE_DURATION)
                })
            })
            .cloned()
            .collect();
        for k in stale {
            self.push_active(&k);
        }
    }

    /// The next pod to schedule, if one is ready at `now`.
    pub fn pop(&mut self, now: Instant) -> Option<(String, &T)> {
        self.flush_backoff(now);
        while let Some(top) = self.active.pop() {
            let valid = self
                .entries
                .get(&top.key)
                .is_some_and(|e| e.seq == top.seq && e.location == Location::Active);
            if !valid {
                continue;
            }
            self.scheduling_cycle += 1;
            let cycle = self.scheduling_cycle;
            let e = self.entries.get_mut(&top.key)?;
            e.location = Location::InFlight;
            e.popped_at_cycle = cycle;
            let key = top.key;
            let e = self.entries.get(&key)?;
            return Some((key, &e.item));
        }
        None
    }

    /// When the next backoff expires (for the loop's timer).
    pub fn next_backoff_deadline(&self) -> Option<Instant> {
        self.backoff.keys().next().map(|(t, _)| *t)
    }

    /// The pod was bound (or given up on): forget it.
    pub fn done(&mut self, key: &str) {
        self.entries.remove(key);
        self.unschedulable.remove(key);
    }

    /// The pod did not fit; `rejectors` are the plugins that rejected it. If a cluster event
    /// arrived while it was in flight it may fit now, so it goes to backoff; otherwise it waits
    /// in unschedulable for an event one of its rejectors' hints accepts.
    pub fn failed(&mut self, key: &str, now: Instant, rejectors: Vec<&'static str>) {
        let move_cycle = self.move_request_cycle;
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.attempts += 1;
        e.last_failure = Some(now);
        e.timestamp = now;
        e.rejectors = rejectors;
        if move_cycle >= e.popped_at_cycle {
            let ready = now + backoff_duration(e.attempts);
            self.push_backoff(key, ready);
        } else {
            e.location = Location::Unschedulable;
            self.unschedulable.insert(key.to_string());
        }
    }

    /// An error (not a fit failure, e.g. the bind call failed): retry after backoff.
    pub fn errored(&mut self, key: &str, now: Instant) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.attempts += 1;
        e.last_failure = Some(now);
        let ready = now + backoff_duration(e.attempts);
        self.push_backoff(key, ready);
    }

    /// A cluster event (node added/updated, pod deleted…) may let unschedulable pods fit:
    /// move them to active, or to backoff if their backoff has not expired.
    pub fn move_all_to_active_or_backoff(&mut self, now: Instant) {
        self.move_if(now, |_, _| true);
    }

    /// A cluster event: moves the unschedulable pods for which `hint(item, rejectors)` says
    /// the event may help (upstream's `MoveAllToActiveOrBackoffQueue` with queueing hints);
    /// returns how many moved.
    pub fn move_if(
        &mut self,
        now: Instant,
        mut hint: impl FnMut(&T, &[&'static str]) -> bool,
    ) -> usize {
        self.move_request_cycle = self.scheduling_cycle;
        if self.unschedulable.is_empty() {
            return 0;
        }
        // When most pods wait in unschedulable, walking the entries spares a key lookup (hash
        // and compare) per pod.
        let waiting: Box<dyn Iterator<Item = (&String, &Entry<T>)>> =
            if self.unschedulable.len() * 4 >= self.entries.len() {
                Box::new(
                    self.entries
                        .iter()
                        .filter(|(_, e)| e.location == Location::Unschedulable),
                )
            } else {
                Box::new(
                    self.unschedulable
                        .iter()
                        .filter_map(|k| self.entries.get_key_value(k)),
                )
            };
        let moving: Vec<(String, Option<Instant>)> = waiting
            .filter(|(_, e)| hint(&e.item, &e.rejectors))
            .map(|(k, e)| (k.clone(), Self::backoff_ready_at(e)))
            .collect();
        let moved = moving.len();
        for (k, ready) in moving {
            match ready.filter(|r| *r > now) {
                Some(r) => self.push_backoff(&k, r),
                None => self.push_active(&k),
            }
        }
        moved
    }

    /// Moves a waiting pod (unschedulable or backoff) straight to active, skipping what is
    /// left of its backoff: upstream's `Activate`, used when a preemptor's own victims are gone
    /// (it waited for them, it did not fail). Returns whether it moved.
    pub fn activate(&mut self, key: &str) -> bool {
        let waiting = self
            .entries
            .get(key)
            .is_some_and(|e| matches!(e.location, Location::Unschedulable | Location::Backoff));
        if waiting {
            self.push_active(key);
        }
        waiting
    }

    /// The queued item, wherever it sits.
    pub fn get(&self, key: &str) -> Option<&T> {
        self.entries.get(key).map(|e| &e.item)
    }

    /// The queued item, to annotate it in place.
    pub fn item_mut(&mut self, key: &str) -> Option<&mut T> {
        self.entries.get_mut(key).map(|e| &mut e.item)
    }

    /// Replaces the item without moving it (an update that cannot change the decision).
    pub fn replace_item(&mut self, key: &str, item: T) {
        if let Some(e) = self.entries.get_mut(key) {
            e.item = item;
        }
    }

    pub fn location(&self, key: &str) -> Option<Location> {
        self.entries.get(key).map(|e| e.location)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Counts per sub-queue: (active, backoff, unschedulable).
    pub fn sizes(&self) -> (usize, usize, usize) {
        let mut s = (0, 0, 0);
        for e in self.entries.values() {
            match e.location {
                Location::Active => s.0 += 1,
                Location::Backoff => s.1 += 1,
                Location::Unschedulable => s.2 += 1,
                Location::InFlight => {}
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        let secs: Vec<u64> = (1..=6).map(|a| backoff_duration(a).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn priority_then_arrival_order() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add("a".into(), (), 0, t0);
        q.add("b".into(), (), 10, t0 + Duration::from_millis(1));
        q.add("c".into(), (), 0, t0 + Duration::from_millis(2));
        q.add("d".into(), (), 10, t0 + Duration::from_millis(3));
        let now = t0 + Duration::from_secs(1);
        let order: Vec<String> = std::iter::from_fn(|| q.pop(now).map(|(k, _)| k)).collect();
        assert_eq!(order, vec!["b", "d", "a", "c"]);
    }

    #[test]
    fn unschedulable_waits_for_an_event_then_honours_backoff() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add("p".into(), (), 0, t0);
        assert!(q.pop(t0).is_some());
        q.failed("p", t0, Vec::new());
        assert_eq!(q.location("p"), Some(Location::Unschedulable));
        assert!(q.pop(t0 + Duration::from_secs(30)).is_none());
        // An event within the 1 s backoff parks it in backoff.
        q.move_all_to_active_or_backoff(t0 + Duration::from_millis(500));
        assert_eq!(q.location("p"), Some(Location::Backoff));
        assert!(q.pop(t0 + Duration::from_millis(900)).is_none());
        assert_eq!(q.next_backoff_deadline(), Some(t0 + Duration::from_secs(1)));
        assert!(q.pop(t0 + Duration::from_secs(1)).is_some());
        // Second failure: 2 s backoff; an event after it expired moves straight to active.
        let t1 = t0 + Duration::from_secs(2);
        q.failed("p", t1, Vec::new());
        q.move_all_to_active_or_backoff(t1 + Duration::from_secs(3));
        assert_eq!(q.location("p"), Some(Location::Active));
    }

    #[test]
    fn event_during_flight_sends_failure_to_backoff() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add("p".into(), (), 0, t0);
        assert!(q.pop(t0).is_some());
        q.move_all_to_active_or_backoff(t0);
        q.failed("p", t0, Vec::new());
        assert_eq!(q.location("p"), Some(Location::Backoff));
    }

    #[test]
    fn leftover_unschedulable_is_flushed_after_five_minutes() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add("p".into(), (), 0, t0);
        q.pop(t0);
        q.failed("p", t0, Vec::new());
        q.flush_unschedulable_leftover(t0 + Duration::from_secs(299));
        assert_eq!(q.location("p"), Some(Location::Unschedulable));
        q.flush_unschedulable_leftover(t0 + Duration::from_secs(300));
        assert_eq!(q.location("p"), Some(Location::Active));
    }

    #[test]
    fn move_if_moves_only_pods_the_hint_accepts() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        for k in ["fit", "ports", "any"] {
            q.add(k.into(), (), 0, t0);
            assert!(q.pop(t0).is_some());
        }
        q.failed("fit", t0, vec!["NodeResourcesFit"]);
        q.failed("ports", t0, vec!["NodePorts"]);
        q.failed("any", t0, Vec::new());
        assert_eq!(q.sizes(), (0, 0, 3));
        let later = t0 + Duration::from_secs(5);
        let moved = q.move_if(later, |_, rejectors| {
            rejectors.is_empty() || rejectors.contains(&"NodeResourcesFit")
        });
        assert_eq!(moved, 2);
        assert_eq!(q.location("fit"), Some(Location::Active));
        assert_eq!(q.location("any"), Some(Location::Active));
        assert_eq!(q.location("ports"), Some(Location::Unschedulable));
        // Nothing left to move for this hint; the leftover flush still finds the last one.
        assert_eq!(q.move_if(later, |_, r| r.contains(&"NodeResourcesFit")), 0);
        q.flush_unschedulable_leftover(t0 + MAX_UNSCHEDULABLE_DURATION);
        assert_eq!(q.location("ports"), Some(Location::Active));
    }

    #[test]
    fn activate_skips_the_rest_of_the_backoff() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        for k in ["waiting", "backing-off", "in-flight"] {
            q.add(k.into(), (), 0, t0);
            assert!(q.pop(t0).is_some());
        }
        q.failed("waiting", t0, Vec::new());
        q.move_all_to_active_or_backoff(t0);
        q.failed("backing-off", t0, Vec::new());
        assert_eq!(q.location("backing-off"), Some(Location::Backoff));
        assert!(q.activate("waiting"));
        assert!(q.activate("backing-off"));
        // A pod being scheduled right now is left alone.
        assert!(!q.activate("in-flight"));
        assert_eq!(q.location("in-flight"), Some(Location::InFlight));
        let popped: Vec<String> = std::iter::from_fn(|| q.pop(t0).map(|(k, _)| k)).collect();
        assert_eq!(popped.len(), 2, "{popped:?}");
        assert!(!q.activate("gone"));
    }

    #[test]
    fn delete_removes_everywhere() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add("p".into(), (), 0, t0);
        q.delete("p");
        assert!(q.pop(t0).is_none());
        assert!(q.is_empty());
    }
}
