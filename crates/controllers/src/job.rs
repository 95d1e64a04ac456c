//! The Job controller: runs pods to completion (NonIndexed and Indexed), tracks finished pods
//! with the `batch.kubernetes.io/job-tracking` finalizer and `uncountedTerminatedPods`, and
//! finishes the Job with upstream's conditions (SuccessCriteriaMet/FailureTarget, then
//! Complete/Failed once no pod is left terminating).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::core::Selector;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::Clock;
use crate::control::{self, EventRecorder, PodControl, object_reference};
use crate::expectations::Expectations;
use crate::job_control::JobControl;
use crate::owner::{self, Claim, controller_of, controller_ref};
use crate::pod_state;
use crate::queue::Key;

/// Name in logs and events, as upstream's component.
pub const NAME: &str = "job-controller";
/// The finalizer that keeps a pod until the Job counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Annotation and label carrying an Indexed Job pod's completion index.
pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";
/// How many counted failures an Indexed Job pod's index had before the pod was created.
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// How many failures of the index a podFailurePolicy `Ignore` rule did not count.
pub const INDEX_IGNORED_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-ignored-failure-count";
/// First delay before replacing a failed pod; doubles per failure.
pub const POD_FAILURE_BACKOFF: Duration = Duration::from_secs(10);
/// Longest delay before replacing a failed pod (upstream's MaxJobPodFailureBackOff).
pub const MAX_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(600);
/// At most this many creates or deletes per sync.
pub const MAX_CREATE_DELETE: usize = 500;

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The selector cannot be parsed.
    #[error("invalid selector: {0}")]
    Selector(String),
    /// A write failed; the sync is retried with backoff.
    #[error(transparent)]
    Control(#[from] control::Error),
}

/// Result of a sync.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Failures since the last success, for the pod re-creation backoff (upstream's backoffRecord).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackoffRecord {
    /// Failed pods counted since the last succeeded one.
    pub failures: u32,
    /// When the latest of them finished.
    pub last_failure: Option<Timestamp>,
}

impl BackoffRecord {
    /// How long to wait before creating pods again at `now`.
    pub fn remaining(&self, now: Timestamp) -> Duration {
        let Some(last) = self.last_failure else {
            return Duration::ZERO;
        };
        if self.failures == 0 {
            return Duration::ZERO;
        }
        let backoff = POD_FAILURE_BACKOFF
            .saturating_mul(1u32 << (self.failures - 1).min(20))
            .min(MAX_POD_FAILURE_BACKOFF);
        let elapsed = now
            .duration_since(last)
            .max(SignedDuration::ZERO)
            .unsigned_abs();
        backoff.saturating_sub(elapsed)
    }
}

/// Everything a Job sync needs: caches, side effects, expectations, clock.
pub struct JobController<C> {
    /// Side effects.
    pub control: Arc<C>,
    /// Pod cache.
    pub pods: Store<Pod>,
    /// Job cache.
    pub jobs: Store<Job>,
    /// Pending pod creates/deletes per Job.
    pub expectations: Expectations,
    /// Clock for startTime, deadlines and the failure backoff.
    pub clock: Clock,
    // Pod uids whose finalizer we removed but the cache still shows: never counted twice.
    removed_finalizers: Mutex<HashMap<Key, HashSet<String>>>,
    // Per Job: failures since the last success (for the re-creation backoff).
    backoff: Mutex<HashMap<Key, BackoffRecord>>,
    // The last status we wrote, with the resourceVersion it replaced: if the cache still holds
    // that version, it has not seen our write yet and we continue from what we wrote.
    written: Mutex<HashMap<Key, (HashSet<String>, Job)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The selector of a Job, parsed.
pub fn selector_of(job: &Job) -> Result<Selector> {
    let sel = job
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    Selector::try_from(sel).map_err(|e| Error::Selector(e.to_string()))
}

/// The Job that controls `pod`, if a Job does.
pub fn owning_job(pod: &Pod) -> Option<Key> {
    let c = controller_of(&pod.metadata)?;
    (c.kind == "Job" && c.api_version == "batch/v1").then(|| {
        Key::new(
            pod.metadata.namespace.clone().unwrap_or_default(),
            c.name.clone(),
        )
    })
}

/// Whether the pod carries the tracking finalizer.
pub fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == TRACKING_FINALIZER))
}

fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

fn completions(job: &Job) -> Option<i32> {
    job.spec.as_ref().and_then(|s| s.completions)
}

fn parallelism(job: &Job) -> i32 {
    job.spec.as_ref().and_then(|s| s.parallelism).unwrap_or(1)
}

/// backoffLimit; with backoffLimitPerIndex the API defaults it to MaxInt32 instead of 6.
fn backoff_limit(job: &Job) -> i32 {
    let spec = job.spec.as_ref();
    let default = if backoff_limit_per_index(job).is_some() {
        i32::MAX
    } else {
        6
    };
    spec.and_then(|s| s.backoff_limit).unwrap_or(default)
}

/// backoffLimitPerIndex, which only Indexed Jobs honour.
fn backoff_limit_per_index(job: &Job) -> Option<i32> {
    is_indexed(job)
        .then(|| job.spec.as_ref()?.backoff_limit_per_index)
        .flatten()
}

fn annotation_count(pod: &Pod, key: &str) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|v| *v >= 0)
        .unwrap_or(0)
}

/// The pod's `job-index-failure-count` (0 when missing or malformed, as upstream).
pub fn index_failure_count(pod: &Pod) -> i32 {
    annotation_count(pod, INDEX_FAILURE_COUNT)
}

/// Counted plus ignored failures of the pod's index before it: what the per-index backoff
/// grows with.
fn index_absolute_failure_count(pod: &Pod) -> i32 {
    index_failure_count(pod).saturating_add(annotation_count(pod, INDEX_IGNORED_FAILURE_COUNT))
}

/// The failure-count annotations for the pod replacing `replaced` in its index.
fn next_index_failure_counts(job: &Job, replaced: Option<&Pod>) -> (i32, i32) {
    let Some(p) = replaced else { return (0, 0) };
    let counted = index_failure_count(p);
    let ignored = annotation_count(p, INDEX_IGNORED_FAILURE_COUNT);
    if counts_as_failure(job, p) {
        (counted.saturating_add(1), ignored)
    } else {
        (counted, ignored.saturating_add(1))
    }
}

/// A failed pod fails its whole index: a `FailIndex` rule matched, or the index used up
/// backoffLimitPerIndex with this counted failure.
fn is_index_failed(job: &Job, pod: &Pod) -> bool {
    let Some(limit) = backoff_limit_per_index(job) else {
        return false;
    };
    if !is_pod_failed(pod, job) {
        return false;
    }
    match match_pod_failure_policy(job, pod) {
        Some(m) if m.action == "FailIndex" => true,
        Some(m) if m.action == "Ignore" => false,
        _ => index_failure_count(pod) >= limit,
    }
}

/// The successPolicy rule the succeeded indexes satisfy: upstream's "Matched rules at index N".
pub fn match_success_policy(job: &Job, succeeded: &BTreeSet<i32>) -> Option<String> {
    let policy = job.spec.as_ref()?.success_policy.as_ref()?;
    if !is_indexed(job) || succeeded.is_empty() {
        return None;
    }
    let limit = completions(job).unwrap_or(0);
    for (i, rule) in policy.rules.iter().enumerate() {
        let hit = if let Some(required) = &rule.succeeded_indexes {
            let required = parse_indexes(required, limit);
            if required.is_empty() {
                // Unparsable (or out of range): the rule cannot match.
                continue;
            }
            let done = required.intersection(succeeded).count();
            done == required.len()
                || rule
                    .succeeded_count
                    .is_some_and(|n| i64::try_from(done).unwrap_or(i64::MAX) >= i64::from(n))
        } else if let Some(n) = rule.succeeded_count {
            i64::try_from(succeeded.len()).unwrap_or(i64::MAX) >= i64::from(n)
        } else {
            false
        };
        if hit {
            return Some(format!("Matched rules at index {i}"));
        }
    }
    None
}

fn suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The completion index of an Indexed Job's pod (annotation first, as upstream).
pub fn completion_index(pod: &Pod) -> Option<i32> {
    let from = |m: &Option<std::collections::BTreeMap<String, String>>| {
        m.as_ref()
            .and_then(|m| m.get(INDEX_KEY))
            .and_then(|v| v.parse::<i32>().ok())
            .filter(|i| *i >= 0)
    };
    from(&pod.metadata.annotations).or_else(|| from(&pod.metadata.labels))
}

fn valid_index(job: &Job, pod: &Pod) -> Option<i32> {
    completion_index(pod).filter(|i| completions(job).is_some_and(|c| *i < c))
}

/// Only failed pods are replaced (never terminating ones): podReplacementPolicy `Failed`, which
/// is also what a podFailurePolicy implies.
fn only_replace_failed(job: &Job) -> bool {
    let spec = job.spec.as_ref();
    spec.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed")
        || spec.is_some_and(|s| s.pod_failure_policy.is_some())
}

/// Whether the Job counts `pod` as failed (a deleted unfinished pod counts, unless only failed
/// pods are replaced).
pub fn is_pod_failed(pod: &Pod, job: &Job) -> bool {
    if phase(pod) == "Failed" {
        return true;
    }
    if only_replace_failed(job) {
        return false;
    }
    pod.metadata.deletion_timestamp.is_some() && phase(pod) != "Succeeded"
}

/// What a podFailurePolicy rule decided about a failed pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyMatch {
    /// The matched rule's action (`FailJob`, `Ignore`, `Count`, `FailIndex`).
    pub action: String,
    /// For `FailJob`, the message the Job fails with.
    pub message: Option<String>,
}

/// Evaluate a Job's podFailurePolicy against a failed pod: the first matching rule wins.
pub fn match_pod_failure_policy(job: &Job, pod: &Pod) -> Option<PolicyMatch> {
    let policy = job.spec.as_ref()?.pod_failure_policy.as_ref()?;
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let status = pod.status.as_ref();
    for (i, rule) in policy.rules.iter().enumerate() {
        if let Some(req) = &rule.on_exit_codes {
            let statuses = status
                .into_iter()
                .flat_map(|s| {
                    s.init_container_statuses
                        .iter()
                        .flatten()
                        .chain(s.container_statuses.iter().flatten())
                })
                .filter(|c| {
                    req.container_name
                        .as_ref()
                        .is_none_or(|want| *want == c.name)
                });
            for cs in statuses {
                let Some(code) = cs
                    .state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map(|t| t.exit_code)
                else {
                    continue;
                };
                // Exit code 0 never matches: success is not a failure cause.
                let hit = code != 0
                    && match req.operator.as_str() {
                        "In" => req.values.contains(&code),
                        "NotIn" => !req.values.contains(&code),
                        _ => false,
                    };
                if hit {
                    let message = (rule.action == "FailJob").then(|| {
                        format!(
                            "Container {} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {i}",
                            cs.name, rule.action
                        )
                    });
                    return Some(PolicyMatch {
                        action: rule.action.clone(),
                        message,
                    });
                }
            }
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let conditions = status.and_then(|s| s.conditions.as_ref());
            for pat in patterns {
                let hit = conditions.is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == pat.type_ && c.status == pat.status)
                });
                if hit {
                    let message = (rule.action == "FailJob").then(|| {
                        format!(
                            "Pod {ns}/{name} has condition {} matching {} rule at index {i}",
                            pat.type_, rule.action
                        )
                    });
                    return Some(PolicyMatch {
                        action: rule.action.clone(),
                        message,
                    });
                }
            }
        }
    }
    None
}

/// Whether a failed pod counts toward backoffLimit (an `Ignore` rule says it does not).
fn counts_as_failure(job: &Job, pod: &Pod) -> bool {
    match match_pod_failure_policy(job, pod) {
        Some(m) => m.action != "Ignore",
        None => true,
    }
}

/// Sorted, de-duplicated completion indexes, rendered as upstream's `1,3-5`.
pub fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last += 1;
            iter.next();
        }
        out.push(if first == last {
            first.to_string()
        } else if last == first + 1 {
            // Upstream spells a two-index run as a pair, not a range.
            format!("{first},{last}")
        } else {
            format!("{first}-{last}")
        });
    }
    out.join(",")
}

/// Parse `1,3-5` into indexes below `limit` (malformed parts are skipped).
pub fn parse_indexes(s: &str, limit: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        if let (Ok(a), Ok(b)) = (a, b) {
            for i in a.max(0)..=b.min(limit - 1) {
                out.insert(i);
            }
        }
    }
    out
}

/// The pod a Job creates: its template, the tracking finalizer, and for Indexed Jobs the
/// completion index (annotation, label, hostname, `JOB_COMPLETION_INDEX`).
pub fn pod_from_template(job: &Job, index: Option<i32>) -> Pod {
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let mut finalizers = tmeta.finalizers.unwrap_or_default();
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.to_string());
    }
    let mut pod = Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: job.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: Some(finalizers),
            owner_references: Some(vec![controller_ref(job)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    };
    if let Some(ix) = index {
        pod.metadata.generate_name = Some(format!("{name}-{ix}-"));
        pod.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(INDEX_KEY.into(), ix.to_string());
        pod.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(INDEX_KEY.into(), ix.to_string());
        let spec = pod.spec.get_or_insert_with(Default::default);
        spec.hostname = Some(format!("{name}-{ix}"));
        let env = EnvVar {
            name: "JOB_COMPLETION_INDEX".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.annotations['{INDEX_KEY}']"),
                }),
                ..EnvVarSource::default()
            }),
        };
        let containers = spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten());
        for c in containers {
            let vars = c.env.get_or_insert_with(Vec::new);
            if !vars.iter().any(|v| v.name == "JOB_COMPLETION_INDEX") {
                vars.push(env.clone());
            }
        }
    }
    pod
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

fn find_condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

fn has_true(status: &JobStatus, type_: &str) -> bool {
    find_condition(status, type_).is_some_and(|c| c.status == "True")
}

/// Set a condition's status/reason/message (a new False condition is not added); returns
/// whether anything changed.
fn ensure_condition(
    status: &mut JobStatus,
    type_: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let list = status.conditions.get_or_insert_with(Vec::new);
    if let Some(c) = list.iter_mut().find(|c| c.type_ == type_) {
        if c.status != value
            || c.reason.as_deref() != Some(reason)
            || c.message.as_deref() != Some(message)
        {
            *c = condition(type_, value, reason, message, now);
            return true;
        }
        return false;
    }
    if value != "False" {
        list.push(condition(type_, value, reason, message, now));
        return true;
    }
    if list.is_empty() {
        status.conditions = None;
    }
    false
}

/// Whether the Job has a True Complete or Failed condition.
pub fn is_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .is_some_and(|s| has_true(s, "Complete") || has_true(s, "Failed"))
}

/// When the Job finished (the transition time of its Complete/Failed condition).
pub fn finish_time(job: &Job) -> Option<Timestamp> {
    let status = job.status.as_ref()?;
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// When a finished pod finished: its containers' latest finishedAt, else `now`.
fn pod_finish_time(pod: &Pod, now: Timestamp) -> Timestamp {
    pod.status
        .as_ref()
        .into_iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max()
        .unwrap_or(now)
}

fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// What one sync computed before writing.
struct Ctx {
    pods: Vec<Pod>,
    active: Vec<Pod>,
    terminating: i32,
    ready: i32,
    succeeded: i32,
    succeeded_indexes: BTreeSet<i32>,
    /// With backoffLimitPerIndex: indexes that failed for good (recorded and new).
    failed_indexes: Option<BTreeSet<i32>>,
    /// With backoffLimitPerIndex: per pending index, the failed pod its replacement takes
    /// the failure counts from; its finalizer stays until the replacement exists.
    delayed: HashMap<i32, Pod>,
    finished: Option<JobCondition>,
    uncounted_succeeded: HashSet<String>,
    uncounted_failed: HashSet<String>,
    removed: HashSet<String>,
    new_backoff: BackoffRecord,
}

impl<C> JobController<C>
where
    C: PodControl + JobControl + EventRecorder + 'static,
{
    /// A controller over these caches.
    pub fn new(control: Arc<C>, pods: Store<Pod>, jobs: Store<Job>, clock: Clock) -> Self {
        JobController {
            control,
            pods,
            jobs,
            expectations: Expectations::new(),
            clock,
            removed_finalizers: Mutex::new(HashMap::new()),
            backoff: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
        }
    }

    /// A pod was seen without our finalizer (or gone): stop remembering its removal.
    pub fn finalizer_removal_observed(&self, key: &Key, uid: &str) {
        if let Some(set) = lock(&self.removed_finalizers).get_mut(key) {
            set.remove(uid);
        }
    }

    /// The current view of a Job: the cache, unless it has not yet seen our last status write.
    fn current(&self, key: &Key) -> Option<Job> {
        let cached = self
            .jobs
            .get(&ObjectRef::new(&key.name).within(&key.namespace))?;
        let mut written = lock(&self.written);
        if let Some((superseded, ours)) = written.get(key)
            && cached
                .metadata
                .resource_version
                .as_ref()
                .is_some_and(|rv| superseded.contains(rv))
            && cached.metadata.uid == ours.metadata.uid
        {
            return Some(ours.clone());
        }
        written.remove(key);
        Some(cached.as_ref().clone())
    }

    async fn write_status(&self, key: &Key, job: &Job) -> Result<Job> {
        let stored = self.control.update_job_status(job).await?;
        if let Some(rv) = job.metadata.resource_version.clone() {
            let mut written = lock(&self.written);
            // Chained writes in one sync: every version before the latest is superseded.
            let mut superseded = match written.remove(key) {
                Some((set, ours)) if ours.metadata.resource_version.as_ref() == Some(&rv) => set,
                _ => HashSet::new(),
            };
            superseded.insert(rv);
            written.insert(key.clone(), (superseded, stored.clone()));
        }
        Ok(stored)
    }

    /// Remove the tracking finalizer from pods whose Job is gone (orphans) so they can go.
    pub async fn release_orphan(&self, pod: &Pod) -> Result<()> {
        if !has_tracking_finalizer(pod) {
            return Ok(());
        }
        if let Some(k) = owning_job(pod)
            && let Some(job) = self.jobs.get(&ObjectRef::new(&k.name).within(&k.namespace))
            && controller_of(&pod.metadata).map(|c| &c.uid) == job.metadata.uid.as_ref()
        {
            return Ok(());
        }
        self.remove_finalizer(pod).await
    }

    async fn remove_finalizer(&self, pod: &Pod) -> Result<()> {
        let remaining: Vec<String> = pod
            .metadata
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != TRACKING_FINALIZER)
            .cloned()
            .collect();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        match self
            .control
            .remove_pod_finalizer(&ns, &name, &uid, TRACKING_FINALIZER, &remaining)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Sync one Job; returns when to look again (deadline, backoff), if it asks for it.
    pub async fn reconcile(&self, key: &Key) -> Result<Option<Duration>> {
        let Some(mut job) = self.current(key) else {
            self.expectations.forget(key);
            lock(&self.removed_finalizers).remove(key);
            lock(&self.backoff).remove(key);
            lock(&self.written).remove(key);
            return Ok(None);
        };
        if is_finished(&job) {
            lock(&self.backoff).remove(key);
            return Ok(None);
        }
        let now = (self.clock)();
        let satisfied = self.expectations.satisfied(key);
        let mut ctx = self.collect(key, &job, now).await?;
        let original = job.status.clone().unwrap_or_default();
        let mut status = original.clone();
        let mut requeue: Option<Duration> = None;
        if status.start_time.is_none() && !suspended(&job) {
            status.start_time = Some(Time(now));
        }

        let failed = status.failed.unwrap_or(0)
            + to_i32(ctx.uncounted_failed.len())
            + to_i32(
                ctx.pods
                    .iter()
                    .filter(|p| self.is_new(&ctx, p, &job) && is_pod_failed(p, &job))
                    .filter(|p| counts_as_failure(&job, p))
                    .count(),
            );

        // A terminal decision taken earlier stands; otherwise look for a new one.
        ctx.finished = find_condition(&status, "SuccessCriteriaMet")
            .filter(|c| c.status == "True")
            .cloned();
        if ctx.finished.is_none() {
            if let Some(ft) =
                find_condition(&status, "FailureTarget").filter(|c| c.status == "True")
            {
                ctx.finished = Some(ft.clone());
            } else if let Some(msg) = ctx
                .pods
                .iter()
                .filter(|p| is_pod_failed(p, &job))
                .find_map(|p| match_pod_failure_policy(&job, p).and_then(|m| m.message))
            {
                ctx.finished = Some(condition(
                    "FailureTarget",
                    "True",
                    "PodFailurePolicy",
                    &msg,
                    now,
                ));
            }
        }
        if ctx.finished.is_none() {
            let deadline = job.spec.as_ref().and_then(|s| s.active_deadline_seconds);
            if failed > backoff_limit(&job) || past_backoff_on_failure(&job, &ctx.pods) {
                ctx.finished = Some(condition(
                    "FailureTarget",
                    "True",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                    now,
                ));
            } else if let (Some(secs), Some(start), false) =
                (deadline, status.start_time.as_ref(), suspended(&job))
            {
                let elapsed = now.duration_since(start.0);
                let allowed = SignedDuration::from_secs(secs);
                if elapsed >= allowed {
                    ctx.finished = Some(condition(
                        "FailureTarget",
                        "True",
                        "DeadlineExceeded",
                        "Job was active longer than specified deadline",
                        now,
                    ));
                } else {
                    requeue = Some((allowed - elapsed).unsigned_abs());
                }
            }
        }
        if ctx.finished.is_none()
            && let Some(failed_ix) = &ctx.failed_indexes
        {
            let n = to_i32(failed_ix.len());
            let max = job.spec.as_ref().and_then(|s| s.max_failed_indexes);
            let done = n.saturating_add(to_i32(ctx.succeeded_indexes.len()));
            if max.is_some_and(|m| n > m) {
                ctx.finished = Some(condition(
                    "FailureTarget",
                    "True",
                    "MaxFailedIndexesExceeded",
                    "Job has exceeded the specified maximal number of failed indexes",
                    now,
                ));
            } else if n > 0 && done >= completions(&job).unwrap_or(0) {
                ctx.finished = Some(condition(
                    "FailureTarget",
                    "True",
                    "FailedIndexes",
                    "Job has failed indexes",
                    now,
                ));
            }
        }
        if ctx.finished.is_none()
            && let Some(msg) = match_success_policy(&job, &ctx.succeeded_indexes)
        {
            ctx.finished = Some(condition(
                "SuccessCriteriaMet",
                "True",
                "SuccessPolicy",
                &msg,
                now,
            ));
        }

        let mut active = to_i32(ctx.active.len());
        let mut manage_err = None;
        if ctx.finished.is_some() {
            let (deleted, deleted_ready, err) = self.delete_pods(&job, &ctx.active, false).await;
            if deleted != active || !satisfied {
                ctx.finished = None;
            }
            active -= deleted;
            ctx.terminating += deleted;
            ctx.ready -= deleted_ready;
            manage_err = err;
        } else {
            let mut managed = false;
            if satisfied && job.metadata.deletion_timestamp.is_none() {
                let (a, wait, err) = self.manage(key, &job, &mut ctx, now).await;
                active = a;
                manage_err = err;
                managed = true;
                if let Some(w) = wait {
                    requeue = Some(requeue.map_or(w, |r| r.min(w)));
                }
            }
            let complete = match completions(&job) {
                None => ctx.succeeded > 0 && active == 0,
                Some(c) => ctx.succeeded >= c && active == 0,
            };
            if complete {
                ctx.finished = Some(condition(
                    "SuccessCriteriaMet",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    now,
                ));
            } else if managed {
                let about = object_reference(&job);
                if suspended(&job) {
                    if ensure_condition(
                        &mut status,
                        "Suspended",
                        "True",
                        "JobSuspended",
                        "Job suspended",
                        now,
                    ) {
                        self.control
                            .record(&about, "Normal", "Suspended", "Job suspended".into());
                    }
                } else if ensure_condition(
                    &mut status,
                    "Suspended",
                    "False",
                    "JobResumed",
                    "Job resumed",
                    now,
                ) {
                    self.control
                        .record(&about, "Normal", "Resumed", "Job resumed".into());
                    // activeDeadlineSeconds counts from the resume.
                    status.start_time = Some(Time(now));
                }
            }
        }
        status.active = Some(active);
        status.ready = Some(ctx.ready);
        status.terminating = Some(ctx.terminating);
        job.status = Some(status);
        self.track(key, &mut job, &mut ctx, original, now).await?;
        if let Some(e) = manage_err {
            return Err(e);
        }
        Ok(requeue)
    }

    /// Whether `pod` finished but is not yet in the Job's counters or uncounted lists.
    fn is_new(&self, ctx: &Ctx, pod: &Pod, job: &Job) -> bool {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        has_tracking_finalizer(pod)
            && !ctx.removed.contains(uid)
            && !ctx.uncounted_succeeded.contains(uid)
            && !ctx.uncounted_failed.contains(uid)
            && (!is_indexed(job) || valid_index(job, pod).is_some())
    }

    /// Claim pods and compute the counters a sync starts from.
    async fn collect(&self, key: &Key, job: &Job, now: Timestamp) -> Result<Ctx> {
        let selector = selector_of(job)?;
        let me = controller_ref(job);
        let deleting = job.metadata.deletion_timestamp.is_some();
        let mut pods: Vec<Pod> = Vec::new();
        for pod in self.pods.state() {
            if pod.metadata.namespace.as_deref() != Some(key.namespace.as_str()) {
                continue;
            }
            let name = pod.metadata.name.clone().unwrap_or_default();
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            match owner::claim(&me, deleting, &selector, &pod.metadata) {
                Claim::Owned => pods.push(pod.as_ref().clone()),
                Claim::Adopt(owners) => {
                    // Finished orphans are history, not work: adopt only running pods.
                    if !pod_state::is_active(&pod) {
                        continue;
                    }
                    match self
                        .control
                        .set_pod_owners(&key.namespace, &name, &uid, &owners)
                        .await
                    {
                        Ok(()) => {
                            let mut p = pod.as_ref().clone();
                            p.metadata.owner_references = Some(owners);
                            pods.push(p);
                        }
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Claim::Release(owners) => {
                    match self
                        .control
                        .set_pod_owners(&key.namespace, &name, &uid, &owners)
                        .await
                    {
                        Ok(()) => {}
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Claim::Ignore => {}
            }
        }
        // A stable order: uncounted lists and index choices do not depend on the cache's.
        pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        // Forget removals the cache has caught up with.
        let removed = {
            let mut all = lock(&self.removed_finalizers);
            let set = all.entry(key.clone()).or_default();
            let still: HashSet<String> = pods
                .iter()
                .filter(|p| has_tracking_finalizer(p))
                .filter_map(|p| p.metadata.uid.clone())
                .collect();
            set.retain(|u| still.contains(u));
            set.clone()
        };
        let status = job.status.clone().unwrap_or_default();
        let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let uncounted_succeeded: HashSet<String> = uncounted
            .succeeded
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let uncounted_failed: HashSet<String> = uncounted
            .failed
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let active: Vec<Pod> = pods
            .iter()
            .filter(|p| pod_state::is_active(p))
            .cloned()
            .collect();
        let terminating = to_i32(
            pods.iter()
                .filter(|p| {
                    p.metadata.deletion_timestamp.is_some()
                        && !matches!(phase(p), "Succeeded" | "Failed")
                })
                .count(),
        );
        let ready = to_i32(active.iter().filter(|p| pod_state::is_ready(p)).count());
        let mut ctx = Ctx {
            pods,
            active,
            terminating,
            ready,
            succeeded: 0,
            succeeded_indexes: BTreeSet::new(),
            failed_indexes: None,
            delayed: HashMap::new(),
            finished: None,
            uncounted_succeeded,
            uncounted_failed,
            removed,
            new_backoff: BackoffRecord::default(),
        };
        let new_succeeded: Vec<&Pod> = ctx
            .pods
            .iter()
            .filter(|p| self.is_new(&ctx, p, job) && phase(p) == "Succeeded")
            .collect();
        let new_failed: Vec<&Pod> = ctx
            .pods
            .iter()
            .filter(|p| self.is_new(&ctx, p, job) && is_pod_failed(p, job))
            .collect();
        if is_indexed(job) {
            let limit = completions(job).unwrap_or(0);
            let mut idx = parse_indexes(status.completed_indexes.as_deref().unwrap_or(""), limit);
            idx.extend(new_succeeded.iter().filter_map(|p| valid_index(job, p)));
            ctx.succeeded = to_i32(idx.len());
            ctx.succeeded_indexes = idx;
        } else {
            ctx.succeeded = status.succeeded.unwrap_or(0)
                + to_i32(new_succeeded.len())
                + to_i32(ctx.uncounted_succeeded.len());
        }
        // The re-creation backoff: a success resets it, failures push it out.
        let prev = lock(&self.backoff).get(key).cloned().unwrap_or_default();
        ctx.new_backoff = if !new_succeeded.is_empty() {
            BackoffRecord::default()
        } else if new_failed.is_empty() {
            prev
        } else {
            let latest = new_failed.iter().map(|p| pod_finish_time(p, now)).max();
            BackoffRecord {
                failures: prev.failures + u32::try_from(new_failed.len()).unwrap_or(u32::MAX),
                last_failure: latest.max(prev.last_failure),
            }
        };
        if backoff_limit_per_index(job).is_some() {
            let (failed, delayed) = self.failed_indexes(&ctx, job, &status);
            ctx.failed_indexes = Some(failed);
            ctx.delayed = delayed;
        }
        Ok(ctx)
    }

    /// backoffLimitPerIndex: the failed indexes (recorded plus newly failed pods), and per
    /// index still to retry, the latest failed pod its replacement continues counting from.
    fn failed_indexes(
        &self,
        ctx: &Ctx,
        job: &Job,
        status: &JobStatus,
    ) -> (BTreeSet<i32>, HashMap<i32, Pod>) {
        let limit = completions(job).unwrap_or(0);
        let mut failed = parse_indexes(status.failed_indexes.as_deref().unwrap_or(""), limit);
        failed.extend(
            ctx.pods
                .iter()
                .filter(|p| {
                    has_tracking_finalizer(p)
                        && !ctx
                            .removed
                            .contains(p.metadata.uid.as_deref().unwrap_or_default())
                })
                .filter(|p| is_index_failed(job, p))
                .filter_map(|p| valid_index(job, p)),
        );
        let active: HashSet<i32> = ctx
            .active
            .iter()
            .filter_map(|p| valid_index(job, p))
            .collect();
        let mut delayed: HashMap<i32, Pod> = HashMap::new();
        for p in ctx.pods.iter().filter(|p| is_pod_failed(p, job)) {
            if !self.is_new(ctx, p, job) {
                continue;
            }
            let Some(ix) = valid_index(job, p) else {
                continue;
            };
            if ctx.succeeded_indexes.contains(&ix) || failed.contains(&ix) || active.contains(&ix) {
                continue;
            }
            let later = |held: &Pod| {
                index_absolute_failure_count(held) <= index_absolute_failure_count(p)
                    && pod_finish_time(p, Timestamp::UNIX_EPOCH)
                        >= pod_finish_time(held, Timestamp::UNIX_EPOCH)
            };
            if delayed.get(&ix).is_none_or(later) {
                delayed.insert(ix, p.clone());
            }
        }
        (failed, delayed)
    }

    /// Create or delete pods toward the wanted number of active ones. Returns the new active
    /// count and, while the failure backoff holds creations back, how long it still holds.
    async fn manage(
        &self,
        key: &Key,
        job: &Job,
        ctx: &mut Ctx,
        now: Timestamp,
    ) -> (i32, Option<Duration>, Option<Error>) {
        let mut active = to_i32(ctx.active.len());
        if suspended(job) {
            self.expectations.expect_deletions(
                key,
                ctx.active.iter().filter_map(|p| p.metadata.name.clone()),
            );
            let victims = ctx.active.clone();
            let (deleted, ready, err) = self.delete_pods(job, &victims, true).await;
            active -= deleted;
            ctx.terminating += deleted;
            ctx.ready -= ready;
            return (active, None, err);
        }
        // An index that failed for good is not run again: stop what still runs for it.
        if let Some(failed_ix) = &ctx.failed_indexes {
            let victims: Vec<Pod> = ctx
                .active
                .iter()
                .filter(|p| valid_index(job, p).is_some_and(|i| failed_ix.contains(&i)))
                .cloned()
                .collect();
            if !victims.is_empty() {
                self.expectations
                    .expect_deletions(key, victims.iter().filter_map(|p| p.metadata.name.clone()));
                let (deleted, ready, err) = self.delete_pods(job, &victims, false).await;
                active -= deleted;
                ctx.terminating += deleted;
                ctx.ready -= ready;
                return (active, None, err);
            }
        }
        let failed_count = ctx.failed_indexes.as_ref().map_or(0, |f| to_i32(f.len()));
        let want = match completions(job) {
            None if ctx.succeeded > 0 => active,
            None => parallelism(job),
            Some(c) => (c - ctx.succeeded - failed_count)
                .min(parallelism(job))
                .max(0),
        };
        let victims = self.pods_to_remove(job, ctx, usize::try_from(active - want).unwrap_or(0));
        if !victims.is_empty() {
            self.expectations
                .expect_deletions(key, victims.iter().filter_map(|p| p.metadata.name.clone()));
            let (deleted, ready, err) = self.delete_pods(job, &victims, true).await;
            active -= deleted;
            ctx.terminating += deleted;
            ctx.ready -= ready;
            return (active, None, err);
        }
        let terminating = if only_replace_failed(job) {
            ctx.terminating
        } else {
            0
        };
        let diff = want - terminating - active;
        if diff <= 0 {
            return (active, None, None);
        }
        let per_index = ctx.failed_indexes.is_some();
        // Per-index backoff replaces the Job-wide one when each index counts its own failures.
        let wait = if per_index {
            Duration::ZERO
        } else {
            ctx.new_backoff.remaining(now)
        };
        if !wait.is_zero() {
            tracing::debug!(job = %key, wait_ms = wait.as_millis() as u64, "pod creation backed off after failures");
            return (active, Some(wait), None);
        }
        let mut n = usize::try_from(diff).unwrap_or(0).min(MAX_CREATE_DELETE);
        let mut indexes: Vec<i32> = Vec::new();
        let mut index_wait: Option<Duration> = None;
        if is_indexed(job) {
            let taken: HashSet<i32> = ctx
                .active
                .iter()
                .filter_map(|p| valid_index(job, p))
                .chain(ctx.succeeded_indexes.iter().copied())
                .chain(ctx.failed_indexes.iter().flatten().copied())
                .collect();
            indexes = (0..completions(job).unwrap_or(0))
                .filter(|i| !taken.contains(i))
                .take(n)
                .collect();
            if per_index {
                indexes.retain(|ix| {
                    let Some(last) = ctx.delayed.get(ix) else {
                        return true;
                    };
                    let failures = u32::try_from(index_absolute_failure_count(last))
                        .unwrap_or(0)
                        .saturating_add(1);
                    let record = BackoffRecord {
                        failures,
                        last_failure: Some(pod_finish_time(last, now)),
                    };
                    let left = record.remaining(now);
                    if left.is_zero() {
                        return true;
                    }
                    index_wait = Some(index_wait.map_or(left, |w| w.min(left)));
                    false
                });
            }
            n = indexes.len();
        }
        if n == 0 {
            return (active, index_wait, None);
        }
        self.expectations.expect_creations(key, n);
        let about = object_reference(job);
        let mut pending = indexes.into_iter();
        let templates: Vec<Pod> = (0..n)
            .map(|_| {
                let ix = pending.next();
                let mut pod = pod_from_template(job, ix);
                if per_index {
                    let replaced = ix.and_then(|i| ctx.delayed.get(&i));
                    let (counted, ignored) = next_index_failure_counts(job, replaced);
                    let a = pod
                        .metadata
                        .annotations
                        .get_or_insert_with(Default::default);
                    a.insert(INDEX_FAILURE_COUNT.into(), counted.to_string());
                    if ignored > 0 {
                        a.insert(INDEX_IGNORED_FAILURE_COUNT.into(), ignored.to_string());
                    }
                }
                pod
            })
            .collect();
        let (created, error) = crate::slow_start::create_pods(
            self.control.as_ref(),
            &self.expectations,
            key,
            &about,
            &templates,
        )
        .await;
        active += i32::try_from(created).unwrap_or(i32::MAX);
        (active, index_wait, error.map(Error::from))
    }

    /// Active pods to delete: for Indexed Jobs duplicated and out-of-range indexes first, then
    /// the least advanced pods (upstream's ActivePods order).
    fn pods_to_remove(&self, job: &Job, ctx: &Ctx, at_least: usize) -> Vec<Pod> {
        let mut rm: Vec<Pod> = Vec::new();
        let mut left: Vec<Pod> = Vec::new();
        if is_indexed(job) {
            let mut seen: HashSet<i32> = HashSet::new();
            let mut sorted = ctx.active.clone();
            // Keep the oldest pod of an index.
            sorted.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
            for p in sorted {
                match valid_index(job, &p) {
                    Some(i) if !ctx.succeeded_indexes.contains(&i) && seen.insert(i) => {
                        left.push(p)
                    }
                    _ => rm.push(p),
                }
            }
        } else {
            left = ctx.active.clone();
        }
        if rm.len() < at_least {
            left.sort_by(|a, b| pod_state::deletion_order(a, 0, b, 0));
            let more = at_least - rm.len();
            rm.extend(left.into_iter().take(more));
        }
        rm.truncate(MAX_CREATE_DELETE);
        rm
    }

    /// Delete pods (first dropping the tracking finalizer when `release` — they are replaced,
    /// not counted). Returns how many went, how many of those were ready, and an error.
    async fn delete_pods(
        &self,
        job: &Job,
        pods: &[Pod],
        release: bool,
    ) -> (i32, i32, Option<Error>) {
        let key = Key::of(&job.metadata);
        let about = object_reference(job);
        let outcomes = join_all(pods.iter().map(|p| async move {
            if release && has_tracking_finalizer(p) {
                self.remove_finalizer(p).await?;
            }
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            let name = p.metadata.name.clone().unwrap_or_default();
            let uid = p.metadata.uid.clone().unwrap_or_default();
            match self.control.delete_pod(&ns, &name, &uid).await {
                Ok(()) => Ok(true),
                Err(e) if e.is_not_found() => Ok(false),
                Err(e) => Err(Error::from(e)),
            }
        }))
        .await;
        let mut deleted = 0;
        let mut ready = 0;
        let mut err = None;
        for (p, outcome) in pods.iter().zip(outcomes) {
            let name = p.metadata.name.clone().unwrap_or_default();
            match outcome {
                Ok(recorded) => {
                    deleted += 1;
                    if pod_state::is_ready(p) {
                        ready += 1;
                    }
                    if recorded {
                        self.control.record(
                            &about,
                            "Normal",
                            "SuccessfulDelete",
                            format!("Deleted pod: {name}"),
                        );
                    } else {
                        self.expectations.deletion_observed(&key, &name);
                    }
                }
                Err(e) => {
                    self.expectations.deletion_observed(&key, &name);
                    self.control.record(
                        &about,
                        "Warning",
                        "FailedDelete",
                        format!("Error deleting: {e}"),
                    );
                    err = Some(e);
                }
            }
        }
        (deleted, ready, err)
    }

    /// Upstream's trackJobStatusAndRemoveFinalizers: record finished pods in
    /// `uncountedTerminatedPods`, write, drop their finalizers, move them to the counters, and
    /// add the terminal condition once nothing is uncounted or terminating.
    async fn track(
        &self,
        key: &Key,
        job: &mut Job,
        ctx: &mut Ctx,
        old: JobStatus,
        now: Timestamp,
    ) -> Result<()> {
        let mut status = job.status.clone().unwrap_or_default();
        let indexed = is_indexed(job);
        let with_finalizer: HashSet<String> = ctx
            .pods
            .iter()
            .filter(|p| has_tracking_finalizer(p))
            .filter_map(|p| p.metadata.uid.clone())
            .filter(|u| !ctx.removed.contains(u))
            .collect();
        let mut unc_s: Vec<String> = status
            .uncounted_terminated_pods
            .as_ref()
            .and_then(|u| u.succeeded.clone())
            .unwrap_or_default();
        let mut unc_f: Vec<String> = status
            .uncounted_terminated_pods
            .as_ref()
            .and_then(|u| u.failed.clone())
            .unwrap_or_default();
        move_counted(&mut status, &mut unc_s, &mut unc_f, &with_finalizer);
        let finished_failure = ctx
            .finished
            .as_ref()
            .is_some_and(|c| c.type_ != "SuccessCriteriaMet");
        let mut to_release: Vec<Pod> = Vec::new();
        for p in &ctx.pods {
            let uid = p.metadata.uid.clone().unwrap_or_default();
            if !has_tracking_finalizer(p) || ctx.removed.contains(&uid) {
                continue;
            }
            let failed = is_pod_failed(p, job);
            let held = ctx
                .delayed
                .values()
                .any(|d| d.metadata.uid == p.metadata.uid);
            let can_release = job.metadata.deletion_timestamp.is_some()
                || ctx.finished.is_some()
                || phase(p) == "Succeeded"
                || (failed && !held);
            if !can_release {
                continue;
            }
            to_release.push(p.clone());
            if phase(p) == "Succeeded" && !ctx.uncounted_failed.contains(&uid) {
                if !indexed && !ctx.uncounted_succeeded.contains(&uid) {
                    unc_s.push(uid);
                }
            } else if (failed || finished_failure)
                && !ctx.uncounted_failed.contains(&uid)
                && (!indexed || valid_index(job, p).is_some())
                && counts_as_failure(job, p)
            {
                unc_f.push(uid);
            }
        }
        if indexed {
            status.completed_indexes = Some(format_indexes(&ctx.succeeded_indexes));
            status.succeeded = Some(to_i32(ctx.succeeded_indexes.len()));
        }
        if let Some(failed_ix) = &ctx.failed_indexes {
            status.failed_indexes = Some(format_indexes(failed_ix));
        }
        set_uncounted(&mut status, &unc_s, &unc_f);
        // The interim condition goes in before any finalizer is removed.
        if let Some(fin) = ctx.finished.clone() {
            if fin.type_ == "FailureTarget" {
                if !has_true(&status, "FailureTarget") {
                    status
                        .conditions
                        .get_or_insert_with(Vec::new)
                        .push(fin.clone());
                }
                ctx.finished = Some(condition(
                    "Failed",
                    "True",
                    fin.reason.as_deref().unwrap_or(""),
                    fin.message.as_deref().unwrap_or(""),
                    now,
                ));
            } else if fin.type_ == "SuccessCriteriaMet" {
                if !has_true(&status, "SuccessCriteriaMet") {
                    status
                        .conditions
                        .get_or_insert_with(Vec::new)
                        .push(fin.clone());
                }
                ctx.finished = Some(condition(
                    "Complete",
                    "True",
                    fin.reason.as_deref().unwrap_or(""),
                    fin.message.as_deref().unwrap_or(""),
                    now,
                ));
            }
        }
        normalize(&mut status);
        if status != normalized(old) {
            job.status = Some(status.clone());
            *job = self.write_status(key, job).await?;
            lock(&self.backoff).insert(key.clone(), ctx.new_backoff.clone());
        } else {
            lock(&self.backoff).insert(key.clone(), ctx.new_backoff.clone());
        }
        // Drop finalizers; a pod whose removal worked is counted below.
        let outcomes = join_all(to_release.iter().map(|p| self.remove_finalizer(p))).await;
        let mut rm_err = None;
        let mut still = with_finalizer.clone();
        for (p, r) in to_release.iter().zip(outcomes) {
            let uid = p.metadata.uid.clone().unwrap_or_default();
            match r {
                Ok(()) => {
                    still.remove(&uid);
                    lock(&self.removed_finalizers)
                        .entry(key.clone())
                        .or_default()
                        .insert(uid);
                }
                Err(e) => rm_err = Some(e),
            }
        }
        let before = status.clone();
        move_counted(&mut status, &mut unc_s, &mut unc_f, &still);
        set_uncounted(&mut status, &unc_s, &unc_f);
        let mut finished_now = None;
        if rm_err.is_none()
            && unc_s.is_empty()
            && unc_f.is_empty()
            && ctx.terminating == 0
            && let Some(fin) = ctx.finished.clone()
        {
            ensure_condition(
                &mut status,
                &fin.type_,
                "True",
                fin.reason.as_deref().unwrap_or(""),
                fin.message.as_deref().unwrap_or(""),
                now,
            );
            if fin.type_ == "Complete" {
                status.completion_time = Some(Time(now));
            }
            finished_now = Some(fin);
        }
        normalize(&mut status);
        if status != before {
            job.status = Some(status);
            *job = self.write_status(key, job).await?;
        }
        if let Some(fin) = finished_now {
            let about = object_reference(job);
            if fin.type_ == "Complete" {
                self.control
                    .record(&about, "Normal", "Completed", "Job completed".into());
            } else {
                self.control.record(
                    &about,
                    "Warning",
                    fin.reason.as_deref().unwrap_or(""),
                    fin.message.clone().unwrap_or_default(),
                );
            }
            lock(&self.backoff).remove(key);
        }
        match rm_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Move uncounted uids whose pods lost their finalizer (or vanished) into the counters.
fn move_counted(
    status: &mut JobStatus,
    unc_s: &mut Vec<String>,
    unc_f: &mut Vec<String>,
    with_finalizer: &HashSet<String>,
) {
    let before_s = unc_s.len();
    unc_s.retain(|u| with_finalizer.contains(u));
    let before_f = unc_f.len();
    unc_f.retain(|u| with_finalizer.contains(u));
    let moved_s = to_i32(before_s - unc_s.len());
    let moved_f = to_i32(before_f - unc_f.len());
    if moved_s > 0 {
        status.succeeded = Some(status.succeeded.unwrap_or(0) + moved_s);
    }
    if moved_f > 0 {
        status.failed = Some(status.failed.unwrap_or(0) + moved_f);
    }
}

fn set_uncounted(status: &mut JobStatus, s: &[String], f: &[String]) {
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: (!s.is_empty()).then(|| s.to_vec()),
        failed: (!f.is_empty()).then(|| f.to_vec()),
    });
}

/// Zero counters and empty lists as the server stores them (omitted), so comparisons see
/// only real changes.
fn normalize(status: &mut JobStatus) {
    for c in [&mut status.succeeded, &mut status.failed] {
        if *c == Some(0) {
            *c = None;
        }
    }
    if status.active == Some(0) {
        status.active = None;
    }
    if status.conditions.as_ref().is_some_and(|c| c.is_empty()) {
        status.conditions = None;
    }
    if status.completed_indexes.as_deref() == Some("") {
        status.completed_indexes = None;
    }
}

fn normalized(mut status: JobStatus) -> JobStatus {
    normalize(&mut status);
    if status.uncounted_terminated_pods.is_none() {
        status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
    }
    status
}

/// restartPolicy OnFailure: container restarts of running pods count toward backoffLimit.
fn past_backoff_on_failure(job: &Job, pods: &[Pod]) -> bool {
    let policy = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.restart_policy.as_deref());
    if policy != Some("OnFailure") {
        return false;
    }
    let restarts: i32 = pods
        .iter()
        .filter(|p| matches!(phase(p), "Running" | "Pending"))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    let limit = backoff_limit(job);
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

#[cfg(test)]
mod tests;
