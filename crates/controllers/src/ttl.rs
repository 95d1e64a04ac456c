//! The TTL-after-finished controller: deletes a finished Job (background propagation, so the
//! garbage collector removes its pods) `ttlSecondsAfterFinished` after it finished.

use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use k8s_openapi::api::batch::v1::Job;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::Clock;
use crate::control;
use crate::job::{finish_time, is_finished};
use crate::job_control::JobControl;
use crate::queue::Key;

/// Name in logs, as upstream's component.
pub const NAME: &str = "ttl-after-finished-controller";

/// Everything a TTL sync needs.
pub struct TtlController<C> {
    /// Side effects.
    pub control: Arc<C>,
    /// Job cache.
    pub jobs: Store<Job>,
    /// Wall clock.
    pub clock: Clock,
}

/// Whether the TTL controller has anything to do with `job`.
pub fn needs_cleanup(job: &Job) -> bool {
    job.metadata.deletion_timestamp.is_none()
        && job
            .spec
            .as_ref()
            .is_some_and(|s| s.ttl_seconds_after_finished.is_some())
        && is_finished(job)
}

impl<C: JobControl + 'static> TtlController<C> {
    /// Delete the Job if its TTL expired; otherwise return when it will.
    pub async fn reconcile(&self, key: &Key) -> Result<Option<Duration>, control::Error> {
        let Some(job) = self
            .jobs
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
        else {
            return Ok(None);
        };
        if !needs_cleanup(&job) {
            return Ok(None);
        }
        let ttl = job
            .spec
            .as_ref()
            .and_then(|s| s.ttl_seconds_after_finished)
            .unwrap_or(0);
        let Some(finished) = finish_time(&job) else {
            return Ok(None);
        };
        let now = (self.clock)();
        let expire = finished
            .checked_add(SignedDuration::from_secs(i64::from(ttl)))
            .unwrap_or(finished);
        if now < expire {
            return Ok(Some(expire.duration_since(now).unsigned_abs()));
        }
        let uid = job.metadata.uid.clone().unwrap_or_default();
        tracing::info!(job = %key, ttl, "deleting finished job after its TTL");
        match self
            .control
            .delete_job(&key.namespace, &key.name, &uid)
            .await
        {
            Ok(()) => Ok(None),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job_control::{JobAction, JobRecorder};
    use jiff::Timestamp;
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).expect("valid time")
    }

    fn job(ttl: Option<i32>, finished_at: Option<i64>) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some("pi".into()),
                namespace: Some("default".into()),
                uid: Some("u".into()),
                ..ObjectMeta::default()
            },
            spec: Some(JobSpec {
                ttl_seconds_after_finished: ttl,
                ..JobSpec::default()
            }),
            status: finished_at.map(|t| JobStatus {
                conditions: Some(vec![JobCondition {
                    type_: "Complete".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(at(t))),
                    ..JobCondition::default()
                }]),
                ..JobStatus::default()
            }),
        }
    }

    fn controller(j: Job, now: i64) -> TtlController<JobRecorder> {
        let mut w: Writer<Job> = Writer::default();
        w.apply_watcher_event(&Event::Apply(j));
        TtlController {
            control: Arc::new(JobRecorder::new()),
            jobs: w.as_reader(),
            clock: Arc::new(move || at(now)),
        }
    }

    #[tokio::test]
    async fn a_finished_job_is_deleted_once_its_ttl_passed_and_requeued_before() {
        let k = Key::new("default", "pi");
        let c = controller(job(Some(100), Some(0)), 40);
        assert_eq!(
            c.reconcile(&k).await.expect("sync"),
            Some(Duration::from_secs(60))
        );
        assert!(c.control.actions().is_empty());
        let c = controller(job(Some(100), Some(0)), 100);
        c.reconcile(&k).await.expect("sync");
        assert_eq!(
            c.control.actions(),
            vec![JobAction::DeleteJob { name: "pi".into() }]
        );
    }

    #[tokio::test]
    async fn running_jobs_and_jobs_without_ttl_are_kept() {
        let k = Key::new("default", "pi");
        for j in [job(Some(0), None), job(None, Some(0))] {
            let c = controller(j, 1000);
            assert_eq!(c.reconcile(&k).await.expect("sync"), None);
            assert!(c.control.actions().is_empty());
        }
    }
}
