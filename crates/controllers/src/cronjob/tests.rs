//! CronJob controller unit tests with a fixed clock: seed caches, reconcile once, assert the
//! Jobs created/deleted, the status and the events.

use super::*;
use crate::job_control::{JobAction, JobRecorder};
use k8s_openapi::api::batch::v1::{CronJobSpec, JobCondition, JobSpec, JobStatus, JobTemplateSpec};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::Event;

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn cronjob(schedule: &str) -> CronJob {
    CronJob {
        metadata: ObjectMeta {
            name: Some("tick".into()),
            namespace: Some("default".into()),
            uid: Some("cj-uid".into()),
            creation_timestamp: Some(Time(ts("2024-01-01T10:00:30Z"))),
            ..ObjectMeta::default()
        },
        spec: Some(CronJobSpec {
            schedule: schedule.into(),
            concurrency_policy: Some("Allow".into()),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(1),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(
                        [("app".to_string(), "tick".to_string())]
                            .into_iter()
                            .collect(),
                    ),
                    ..ObjectMeta::default()
                }),
                spec: Some(JobSpec::default()),
            },
            ..CronJobSpec::default()
        }),
        status: None,
    }
}

fn owned_job(cj: &CronJob, name: &str, finished: Option<(&str, &str)>) -> Job {
    let mut j = Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            owner_references: Some(vec![controller_ref(cj)]),
            creation_timestamp: Some(Time(ts("2024-01-01T10:00:00Z"))),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec::default()),
        status: None,
    };
    if let Some((type_, at)) = finished {
        j.status = Some(JobStatus {
            start_time: Some(Time(ts(at))),
            completion_time: (type_ == "Complete").then(|| Time(ts(at))),
            conditions: Some(vec![JobCondition {
                type_: type_.into(),
                status: "True".into(),
                last_transition_time: Some(Time(ts(at))),
                ..JobCondition::default()
            }]),
            ..JobStatus::default()
        });
    }
    j
}

fn active_ref(j: &Job) -> ObjectReference {
    object_reference(j)
}

fn controller(cj: CronJob, jobs: Vec<Job>, now: &str) -> CronJobController<JobRecorder> {
    let mut jw: Writer<Job> = Writer::default();
    for j in jobs {
        jw.apply_watcher_event(&Event::Apply(j));
    }
    let mut cw: Writer<CronJob> = Writer::default();
    cw.apply_watcher_event(&Event::Apply(cj));
    let now = ts(now);
    CronJobController {
        control: Arc::new(JobRecorder::new()),
        jobs: jw.as_reader(),
        cronjobs: cw.as_reader(),
        clock: Arc::new(move || now),
    }
}

fn key() -> Key {
    Key::new("default", "tick")
}

fn last_status(c: &CronJobController<JobRecorder>) -> CronJobStatus {
    c.control
        .cron_statuses()
        .last()
        .and_then(|cj| cj.status.clone())
        .expect("a status was written")
}

#[tokio::test]
async fn a_due_schedule_creates_a_named_annotated_owned_job_and_requeues_for_the_next() {
    let c = controller(cronjob("*/5 * * * *"), vec![], "2024-01-01T10:05:10Z");
    let requeue = c.reconcile(&key()).await.expect("sync");
    let created = c.control.created_jobs();
    assert_eq!(created.len(), 1);
    let j = &created[0];
    let minutes = ts("2024-01-01T10:05:00Z").as_second() / 60;
    assert_eq!(
        j.metadata.name.as_deref(),
        Some(format!("tick-{minutes}").as_str())
    );
    assert_eq!(
        j.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SCHEDULED_TIMESTAMP))
            .map(String::as_str),
        Some("2024-01-01T10:05:00Z")
    );
    assert_eq!(
        j.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app"))
            .map(String::as_str),
        Some("tick")
    );
    let owner = &j.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("CronJob", Some(true))
    );
    let s = last_status(&c);
    assert_eq!(s.last_schedule_time, Some(Time(ts("2024-01-01T10:05:00Z"))));
    assert_eq!(s.active.as_ref().map(Vec::len), Some(1));
    assert_eq!(
        c.control.events(),
        vec![format!("SuccessfulCreate: Created job tick-{minutes}")]
    );
    // Next activation 10:10:00, 4 min 50 s away (+100 ms).
    assert_eq!(requeue, Some(Duration::from_millis(290_100)));
}

#[tokio::test]
async fn nothing_is_due_before_the_first_activation() {
    let c = controller(cronjob("*/5 * * * *"), vec![], "2024-01-01T10:03:00Z");
    let requeue = c.reconcile(&key()).await.expect("sync");
    assert!(c.control.created_jobs().is_empty());
    assert_eq!(requeue, Some(Duration::from_millis(120_100)));
}

#[tokio::test]
async fn forbid_skips_while_a_job_is_active_and_replace_deletes_it() {
    let mut cj = cronjob("*/5 * * * *");
    let running = owned_job(&cj, "tick-1", None);
    cj.status = Some(CronJobStatus {
        active: Some(vec![active_ref(&running)]),
        last_schedule_time: Some(Time(ts("2024-01-01T10:00:00Z"))),
        ..CronJobStatus::default()
    });
    cj.spec.as_mut().expect("spec").concurrency_policy = Some("Forbid".into());
    let c = controller(cj.clone(), vec![running.clone()], "2024-01-01T10:05:10Z");
    c.reconcile(&key()).await.expect("sync");
    assert!(c.control.created_jobs().is_empty());
    assert_eq!(
        c.control.events(),
        vec![
            "JobAlreadyActive: Not starting job because prior execution is running and concurrency policy is Forbid"
        ]
    );

    cj.spec.as_mut().expect("spec").concurrency_policy = Some("Replace".into());
    let c = controller(cj, vec![running], "2024-01-01T10:05:10Z");
    c.reconcile(&key()).await.expect("sync");
    assert_eq!(
        c.control.actions()[..2],
        [
            JobAction::DeleteJob {
                name: "tick-1".into()
            },
            JobAction::CreateJob {
                name: format!("tick-{}", ts("2024-01-01T10:05:00Z").as_second() / 60)
            },
        ]
    );
    assert!(c.control.events()[0].starts_with("SuccessfulDelete: Deleted job tick-1"));
    let s = last_status(&c);
    assert_eq!(s.active.as_ref().map(Vec::len), Some(1), "only the new job");
}

#[tokio::test]
async fn a_start_later_than_the_starting_deadline_is_missed() {
    let mut cj = cronjob("0 * * * *");
    cj.spec.as_mut().expect("spec").starting_deadline_seconds = Some(200);
    cj.status = Some(CronJobStatus {
        last_schedule_time: Some(Time(ts("2024-01-01T09:00:00Z"))),
        ..CronJobStatus::default()
    });
    // 11:00 was due, now is 11:05: past the 200 s deadline.
    let c = controller(cj, vec![], "2024-01-01T11:05:00Z");
    c.reconcile(&key()).await.expect("sync");
    assert!(c.control.created_jobs().is_empty());
    assert!(
        c.control.events().is_empty(),
        "the deadline window starts after the missed time"
    );
}

#[tokio::test]
async fn a_start_inside_the_deadline_window_runs_and_one_outside_is_skipped() {
    let mut cj = cronjob("*/5 * * * *");
    cj.spec.as_mut().expect("spec").starting_deadline_seconds = Some(10);
    cj.status = Some(CronJobStatus {
        last_schedule_time: Some(Time(ts("2024-01-01T10:00:00Z"))),
        ..CronJobStatus::default()
    });
    // earliest = now - 10 s = 10:04:55 → next 10:05:00 ≤ now, and 10:05:00 + 10 s ≥ now: on time.
    let c = controller(cj.clone(), vec![], "2024-01-01T10:05:05Z");
    c.reconcile(&key()).await.expect("sync");
    assert_eq!(c.control.created_jobs().len(), 1);
    // Without a deadline window bound, a start 10:05 seen at 10:06 with deadline 10 s is missed.
    let (t, _) = most_recent_schedule_time(
        &{
            let mut x = cj.clone();
            x.spec.as_mut().expect("spec").starting_deadline_seconds = None;
            x
        },
        ts("2024-01-01T10:06:00Z"),
        &Schedule::parse("*/5 * * * *").expect("parse"),
        &TimeZone::UTC,
    )
    .expect("schedule");
    assert_eq!(t, Some(ts("2024-01-01T10:05:00Z")));
    // With the deadline, the window starts 70 s back: 10:05 is outside it and silently skipped
    // (upstream bounds the search the same way, so its MissSchedule event is rare).
    let mut late = cj;
    late.spec.as_mut().expect("spec").starting_deadline_seconds = Some(70);
    let c = controller(late, vec![], "2024-01-01T10:06:30Z");
    c.reconcile(&key()).await.expect("sync");
    assert!(c.control.created_jobs().is_empty());
}

#[tokio::test]
async fn too_many_missed_start_times_are_reported_and_the_latest_one_runs() {
    let mut cj = cronjob("* * * * *");
    cj.status = Some(CronJobStatus {
        last_schedule_time: Some(Time(ts("2024-01-01T00:00:00Z"))),
        ..CronJobStatus::default()
    });
    let c = controller(cj, vec![], "2024-01-01T10:00:30Z");
    c.reconcile(&key()).await.expect("sync");
    let events = c.control.events();
    assert!(
        events[0].starts_with("TooManyMissedTimes: too many missed start times: 600."),
        "{events:?}"
    );
    assert_eq!(
        last_status(&c).last_schedule_time,
        Some(Time(ts("2024-01-01T10:00:00Z")))
    );
}

#[tokio::test]
async fn completed_jobs_leave_active_update_last_successful_time_and_history_is_trimmed() {
    let mut cj = cronjob("0 0 1 1 *");
    let done: Vec<Job> = (1..=4)
        .map(|i| {
            owned_job(
                &cj,
                &format!("tick-{i}"),
                Some(("Complete", &format!("2024-01-01T0{i}:00:00Z"))),
            )
        })
        .collect();
    let failed: Vec<Job> = (5..=6)
        .map(|i| {
            owned_job(
                &cj,
                &format!("tick-{i}"),
                Some(("Failed", &format!("2024-01-01T0{i}:00:00Z"))),
            )
        })
        .collect();
    cj.status = Some(CronJobStatus {
        active: Some(vec![active_ref(&done[3])]),
        last_schedule_time: Some(Time(ts("2024-01-01T00:00:00Z"))),
        ..CronJobStatus::default()
    });
    let jobs: Vec<Job> = done.into_iter().chain(failed).collect();
    let c = controller(cj, jobs, "2024-01-01T09:00:00Z");
    c.reconcile(&key()).await.expect("sync");
    let events = c.control.events();
    assert!(
        events
            .contains(&"SawCompletedJob: Saw completed job: tick-4, status: Complete".to_string())
    );
    let deleted: Vec<JobAction> = c
        .control
        .actions()
        .into_iter()
        .filter(|a| matches!(a, JobAction::DeleteJob { .. }))
        .collect();
    assert_eq!(
        deleted,
        vec![
            JobAction::DeleteJob {
                name: "tick-1".into()
            },
            JobAction::DeleteJob {
                name: "tick-5".into()
            },
        ],
        "oldest success beyond 3 and oldest failure beyond 1"
    );
    let s = last_status(&c);
    assert_eq!(s.active, None);
    assert_eq!(
        s.last_successful_time,
        Some(Time(ts("2024-01-01T04:00:00Z")))
    );
}

#[tokio::test]
async fn suspended_cronjobs_start_nothing() {
    let mut cj = cronjob("* * * * *");
    cj.spec.as_mut().expect("spec").suspend = Some(true);
    let c = controller(cj, vec![], "2024-01-01T10:05:10Z");
    assert_eq!(c.reconcile(&key()).await.expect("sync"), None);
    assert!(c.control.created_jobs().is_empty());
}

#[tokio::test]
async fn time_zone_shifts_the_schedule_and_the_annotation() {
    let mut cj = cronjob("0 9 * * *");
    cj.spec.as_mut().expect("spec").time_zone = Some("Europe/Berlin".into());
    cj.metadata.creation_timestamp = Some(Time(ts("2024-01-15T00:00:00Z")));
    // 09:00 Berlin (UTC+1 in January) is 08:00 UTC.
    let c = controller(cj.clone(), vec![], "2024-01-15T08:00:05Z");
    c.reconcile(&key()).await.expect("sync");
    let j = &c.control.created_jobs()[0];
    assert_eq!(
        j.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SCHEDULED_TIMESTAMP))
            .map(String::as_str),
        Some("2024-01-15T09:00:00+01:00")
    );
    cj.spec.as_mut().expect("spec").time_zone = Some("Mars/Olympus".into());
    let c = controller(cj, vec![], "2024-01-15T08:00:05Z");
    c.reconcile(&key()).await.expect("sync");
    assert!(c.control.created_jobs().is_empty());
    assert!(
        c.control.events()[0].starts_with("UnknownTimeZone: invalid timeZone: \"Mars/Olympus\"")
    );
}

#[tokio::test]
async fn an_active_job_gone_from_cache_and_server_is_dropped_but_kept_if_only_the_cache_lags() {
    let mut cj = cronjob("0 0 1 1 *");
    let gone = owned_job(&cj, "tick-gone", None);
    let lagging = owned_job(&cj, "tick-new", None);
    cj.status = Some(CronJobStatus {
        active: Some(vec![active_ref(&gone), active_ref(&lagging)]),
        last_schedule_time: Some(Time(ts("2024-01-01T00:00:00Z"))),
        ..CronJobStatus::default()
    });
    let c = controller(cj, vec![], "2024-01-01T09:00:00Z");
    c.control.add_existing_job("tick-new");
    c.reconcile(&key()).await.expect("sync");
    assert_eq!(
        c.control.events(),
        vec!["MissingJob: Active job went missing: tick-gone"]
    );
    let s = last_status(&c);
    let names: Vec<String> = s
        .active
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| r.name)
        .collect();
    assert_eq!(names, vec!["tick-new"]);
}
