//! The CronJob controller (upstream's v2): creates a Job per scheduled time
//! (`<cronjob>-<minutes since the epoch>`), honours concurrencyPolicy, startingDeadlineSeconds,
//! suspend and timeZone, keeps `status.active`/`lastScheduleTime`/`lastSuccessfulTime`, and
//! deletes finished Jobs beyond the history limits.

use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::Clock;
use crate::control::{self, EventRecorder, object_reference};
use crate::cronjob_schedule::Schedule;
use crate::job::{finish_time, is_finished};
use crate::job_control::JobControl;
use crate::owner::{controller_of, controller_ref};
use crate::queue::Key;

/// Name in logs and events, as upstream's component.
pub const NAME: &str = "cronjob-controller";
/// Annotation with the scheduled time a Job was created for (RFC 3339 in the CronJob's zone).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Missing more start times than this is reported (`TooManyMissedTimes`).
pub const MAX_MISSED: i64 = 100;
/// Requeues land a little after the scheduled time, as upstream's `nextScheduleDelta`.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A write failed; the sync is retried with backoff.
    #[error(transparent)]
    Control(#[from] control::Error),
}

/// Result of a sync.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a CronJob sync needs.
pub struct CronJobController<C> {
    /// Side effects.
    pub control: Arc<C>,
    /// Job cache.
    pub jobs: Store<Job>,
    /// CronJob cache.
    pub cronjobs: Store<CronJob>,
    /// Wall clock.
    pub clock: Clock,
}

/// The CronJob that controls `job`, if one does.
pub fn owning_cronjob(job: &Job) -> Option<Key> {
    let c = controller_of(&job.metadata)?;
    (c.kind == "CronJob" && c.api_version == "batch/v1").then(|| {
        Key::new(
            job.metadata.namespace.clone().unwrap_or_default(),
            c.name.clone(),
        )
    })
}

/// The Job name for a scheduled time: `<cronjob>-<minutes since the epoch>`.
pub fn job_name(cj: &CronJob, scheduled: Timestamp) -> String {
    format!(
        "{}-{}",
        cj.metadata.name.as_deref().unwrap_or_default(),
        scheduled.as_second().div_euclid(60)
    )
}

/// The zone a CronJob's schedule is evaluated in (UTC when unset: the controller's zone).
pub fn time_zone(cj: &CronJob) -> Result<TimeZone, String> {
    match cj.spec.as_ref().and_then(|s| s.time_zone.as_deref()) {
        None | Some("") => Ok(TimeZone::UTC),
        Some(name) => TimeZone::get(name).map_err(|e| e.to_string()),
    }
}

/// Upstream's mostRecentScheduleTime: the latest activation at or before `now` not yet
/// handled (after `lastScheduleTime`, or creation, bounded by startingDeadlineSeconds), and
/// roughly how many were missed.
pub fn most_recent_schedule_time(
    cj: &CronJob,
    now: Timestamp,
    sched: &Schedule,
    tz: &TimeZone,
) -> Result<(Option<Timestamp>, i64), String> {
    let status = cj.status.clone().unwrap_or_default();
    let mut earliest = status
        .last_schedule_time
        .map(|t| t.0)
        .or_else(|| cj.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(now);
    if let Some(sds) = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds)
        && let Ok(deadline) = now.checked_sub(SignedDuration::from_secs(sds))
        && deadline > earliest
    {
        earliest = deadline;
    }
    let Some(t1) = sched.next(earliest, tz) else {
        return Ok((None, 0));
    };
    if now < t1 {
        return Ok((None, 0));
    }
    let Some(t2) = sched.next(t1, tz) else {
        return Ok((Some(t1), 1));
    };
    if now < t2 {
        return Ok((Some(t1), 1));
    }
    let between = t2.duration_since(t1).as_secs();
    if between < 1 {
        return Err("time difference between two schedules is less than 1 second".into());
    }
    let elapsed = now.duration_since(t1).as_secs();
    let missed = elapsed / between + 1;
    // Start two periods back so irregular schedules (e.g. Wed and Sun) still land exactly.
    let back = (missed - 2).max(0) * between;
    let mut t = t1
        .checked_add(SignedDuration::from_secs(back))
        .map_err(|e| e.to_string())?;
    // `t` may not be an activation itself: step to the one at or before it.
    if t > t1 {
        t = t.checked_sub(SignedDuration::from_secs(1)).unwrap_or(t);
        t = sched.next(t, tz).unwrap_or(t1);
    }
    let mut most_recent = t1;
    while t <= now {
        most_recent = t;
        match sched.next(t, tz) {
            Some(n) => t = n,
            None => break,
        }
    }
    Ok((Some(most_recent), missed))
}

fn format_rfc1123z(t: Timestamp) -> String {
    // Go's time.RFC1123Z in UTC: "Mon, 02 Jan 2006 15:04:05 -0700".
    t.to_zoned(TimeZone::UTC)
        .strftime("%a, %d %b %Y %H:%M:%S %z")
        .to_string()
}

/// The Job a CronJob creates for `scheduled`.
pub fn job_from_template(cj: &CronJob, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP.into(),
        scheduled
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
            .replace("+00:00", "Z"),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(cj, scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(cj)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

fn succeeded(job: &Job) -> bool {
    job.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Complete" && c.status == "True")
    })
}

fn finished_type(job: &Job) -> &'static str {
    if succeeded(job) { "Complete" } else { "Failed" }
}

impl<C> CronJobController<C>
where
    C: JobControl + EventRecorder + 'static,
{
    /// Sync one CronJob; returns when its next start time is due.
    pub async fn reconcile(&self, key: &Key) -> Result<Option<Duration>> {
        let Some(cj) = self
            .cronjobs
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
        else {
            return Ok(None);
        };
        let mut cj = cj.as_ref().clone();
        let about = object_reference(&cj);
        let now = (self.clock)();
        let uid = cj.metadata.uid.clone();
        let jobs: Vec<Job> = self
            .jobs
            .state()
            .into_iter()
            .filter(|j| j.metadata.namespace.as_deref() == Some(key.namespace.as_str()))
            .filter(|j| controller_of(&j.metadata).map(|c| &c.uid) == uid.as_ref())
            .map(|j| j.as_ref().clone())
            .collect();
        let original = cj.status.clone();
        let mut status: CronJobStatus = cj.status.clone().unwrap_or_default();
        let mut active = status.active.clone().unwrap_or_default();
        for j in &jobs {
            let juid = j.metadata.uid.clone();
            let listed = active.iter().any(|r| r.uid == juid);
            let name = j.metadata.name.clone().unwrap_or_default();
            if !listed && !is_finished(j) {
                self.control.record(
                    &about,
                    "Warning",
                    "UnexpectedJob",
                    format!("Saw a job that the controller did not create or forgot: {name}"),
                );
            } else if listed && is_finished(j) {
                active.retain(|r| r.uid != juid);
                self.control.record(
                    &about,
                    "Normal",
                    "SawCompletedJob",
                    format!("Saw completed job: {name}, status: {}", finished_type(j)),
                );
            }
            if succeeded(j) {
                let done = j
                    .status
                    .as_ref()
                    .and_then(|s| s.completion_time.as_ref())
                    .map(|t| t.0);
                if let Some(done) = done
                    && status
                        .last_successful_time
                        .as_ref()
                        .is_none_or(|l| l.0 < done)
                {
                    status.last_successful_time = Some(Time(done));
                }
            }
        }
        // Active references whose Job is gone (checked live: the cache may lag a create).
        let mut kept = Vec::new();
        for r in active {
            let in_cache = jobs.iter().any(|j| j.metadata.uid == r.uid);
            let name = r.name.clone().unwrap_or_default();
            if in_cache || self.control.job_exists(&key.namespace, &name).await? {
                kept.push(r);
            } else {
                self.control.record(
                    &about,
                    "Normal",
                    "MissingJob",
                    format!("Active job went missing: {name}"),
                );
            }
        }
        active = kept;
        status.active = (!active.is_empty()).then(|| active.clone());
        let result = self.schedule(&cj, &mut status, &jobs, now).await;
        self.cleanup_history(&cj, &mut status, &jobs).await;
        if status.active.as_ref().is_some_and(|a| a.is_empty()) {
            status.active = None;
        }
        if Some(&status) != original.as_ref()
            && !(original.is_none() && status == CronJobStatus::default())
        {
            cj.status = Some(status);
            self.control.update_cron_job_status(&cj).await?;
        }
        result
    }

    /// The scheduling part of a sync: maybe create (or replace) a Job; returns the requeue.
    async fn schedule(
        &self,
        cj: &CronJob,
        status: &mut CronJobStatus,
        jobs: &[Job],
        now: Timestamp,
    ) -> Result<Option<Duration>> {
        let about = object_reference(cj);
        if cj.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let tz = match time_zone(cj) {
            Ok(tz) => tz,
            Err(e) => {
                let name = cj
                    .spec
                    .as_ref()
                    .and_then(|s| s.time_zone.clone())
                    .unwrap_or_default();
                self.control.record(
                    &about,
                    "Warning",
                    "UnknownTimeZone",
                    format!("invalid timeZone: {name:?}: {e}"),
                );
                return Ok(None);
            }
        };
        let spec = cj.spec.clone().unwrap_or_default();
        if spec.suspend == Some(true) {
            return Ok(None);
        }
        let sched = match Schedule::parse(&spec.schedule) {
            Ok(s) => s,
            Err(e) => {
                self.control.record(
                    &about,
                    "Warning",
                    "UnparseableSchedule",
                    format!("unparseable schedule: {:?} : {e}", spec.schedule),
                );
                return Ok(None);
            }
        };
        let next_delay = || {
            sched
                .next(now, &tz)
                .map(|t| t.duration_since(now).unsigned_abs() + NEXT_SCHEDULE_DELTA)
        };
        let (scheduled, missed) = match most_recent_schedule_time(cj, now, &sched, &tz) {
            Ok(x) => x,
            Err(e) => {
                self.control.record(
                    &about,
                    "Warning",
                    "InvalidSchedule",
                    format!("invalid schedule: {} : {e}", spec.schedule),
                );
                return Ok(None);
            }
        };
        if missed > MAX_MISSED {
            self.control.record(
                &about,
                "Warning",
                "TooManyMissedTimes",
                format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"),
            );
        }
        let Some(scheduled) = scheduled else {
            return Ok(next_delay());
        };
        if let Some(sds) = spec.starting_deadline_seconds
            && scheduled
                .checked_add(SignedDuration::from_secs(sds))
                .is_ok_and(|d| d < now)
        {
            self.control.record(
                &about,
                "Warning",
                "MissSchedule",
                format!(
                    "Missed scheduled time to start a job: {}",
                    format_rfc1123z(scheduled)
                ),
            );
            return Ok(next_delay());
        }
        let name = job_name(cj, scheduled);
        let active = status.active.clone().unwrap_or_default();
        if active
            .iter()
            .any(|r| r.name.as_deref() == Some(name.as_str()))
            || status.last_schedule_time.as_ref().map(|t| t.0) == Some(scheduled)
        {
            return Ok(next_delay());
        }
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        if policy == "Forbid" && !active.is_empty() {
            self.control.record(
                &about,
                "Normal",
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            );
            return Ok(next_delay());
        }
        if policy == "Replace" {
            for r in &active {
                let jname = r.name.clone().unwrap_or_default();
                let juid = r.uid.clone().unwrap_or_default();
                match self
                    .control
                    .delete_job(
                        &cj.metadata.namespace.clone().unwrap_or_default(),
                        &jname,
                        &juid,
                    )
                    .await
                {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => {
                        self.control.record(
                            &about,
                            "Warning",
                            "FailedDelete",
                            format!("Deleted job: {e}"),
                        );
                        return Err(e.into());
                    }
                }
                self.control.record(
                    &about,
                    "Normal",
                    "SuccessfulDelete",
                    format!("Deleted job {jname}"),
                );
            }
            status.active = None;
        }
        let job = job_from_template(cj, scheduled, &tz);
        match self.control.create_job(&job).await {
            Ok(created) => {
                self.control.record(
                    &about,
                    "Normal",
                    "SuccessfulCreate",
                    format!("Created job {name}"),
                );
                status
                    .active
                    .get_or_insert_with(Vec::new)
                    .push(object_reference(&created));
            }
            Err(e) if e.is_already_exists() => {
                // Created by an earlier sync whose status write the cache has not shown yet.
                tracing::info!(cronjob = %Key::of(&cj.metadata), job = %name, "job already exists");
                if !jobs
                    .iter()
                    .any(|j| j.metadata.name.as_deref() == Some(name.as_str()))
                {
                    return Ok(Some(Duration::from_secs(1)));
                }
            }
            Err(e) => {
                self.control.record(
                    &about,
                    "Warning",
                    "FailedCreate",
                    format!("Error creating job: {e}"),
                );
                return Err(e.into());
            }
        }
        status.last_schedule_time = Some(Time(scheduled));
        Ok(next_delay())
    }

    /// Delete the oldest finished Jobs beyond successfulJobsHistoryLimit/failedJobsHistoryLimit.
    async fn cleanup_history(&self, cj: &CronJob, status: &mut CronJobStatus, jobs: &[Job]) {
        let spec = cj.spec.clone().unwrap_or_default();
        let about = object_reference(cj);
        let by_start = |j: &Job| {
            j.status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0)
                .or_else(|| j.metadata.creation_timestamp.as_ref().map(|t| t.0))
                .or_else(|| finish_time(j))
        };
        for (want_success, limit) in [
            (true, spec.successful_jobs_history_limit),
            (false, spec.failed_jobs_history_limit),
        ] {
            let Some(limit) = limit else { continue };
            let mut finished: Vec<&Job> = jobs
                .iter()
                .filter(|j| is_finished(j) && succeeded(j) == want_success)
                .collect();
            let limit = usize::try_from(limit.max(0)).unwrap_or(0);
            if finished.len() <= limit {
                continue;
            }
            finished.sort_by_key(|j| by_start(j));
            let excess = finished.len() - limit;
            for j in finished.into_iter().take(excess) {
                let name = j.metadata.name.clone().unwrap_or_default();
                let uid = j.metadata.uid.clone().unwrap_or_default();
                let ns = j.metadata.namespace.clone().unwrap_or_default();
                match self.control.delete_job(&ns, &name, &uid).await {
                    Ok(()) => {
                        self.control.record(
                            &about,
                            "Normal",
                            "SuccessfulDelete",
                            format!("Deleted job {name}"),
                        );
                    }
                    Err(e) if e.is_not_found() => {}
                    Err(e) => {
                        tracing::info!(job = %name, error = %e, "history cleanup failed");
                        continue;
                    }
                }
                if let Some(a) = status.active.as_mut() {
                    a.retain(|r| r.uid.as_deref() != Some(uid.as_str()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
