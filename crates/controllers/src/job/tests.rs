//! Job controller unit tests: seed caches, reconcile once, assert creates/deletes/status.

use super::*;
use crate::control::Action;
use crate::job_control::{JobAction, JobRecorder};
use k8s_openapi::api::batch::v1::{
    JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
    SuccessPolicy, SuccessPolicyRule,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateTerminated, ContainerStatus, PodSpec, PodStatus,
    PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::Event;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).expect("valid time")
}

fn labels() -> Option<std::collections::BTreeMap<String, String>> {
    Some(
        [(
            "batch.kubernetes.io/controller-uid".to_string(),
            "job-uid".to_string(),
        )]
        .into_iter()
        .collect(),
    )
}

fn job(completions: Option<i32>, parallelism: i32) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some("pi".into()),
            namespace: Some("default".into()),
            uid: Some("job-uid".into()),
            resource_version: Some("1".into()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            completions,
            parallelism: Some(parallelism),
            backoff_limit: Some(6),
            selector: Some(LabelSelector {
                match_labels: labels(),
                ..LabelSelector::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: labels(),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "main".into(),
                        ..Container::default()
                    }],
                    restart_policy: Some("Never".into()),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

fn indexed(completions: i32, parallelism: i32) -> Job {
    let mut j = job(Some(completions), parallelism);
    j.spec.as_mut().expect("spec").completion_mode = Some("Indexed".into());
    j
}

fn pod(j: &Job, name: &str, phase: &str, index: Option<i32>) -> Pod {
    let mut p = pod_from_template(j, index);
    p.metadata.generate_name = None;
    p.metadata.name = Some(name.into());
    p.metadata.uid = Some(format!("uid-{name}"));
    p.metadata.creation_timestamp = Some(Time(at(0)));
    p.status = Some(PodStatus {
        phase: Some(phase.into()),
        ..PodStatus::default()
    });
    p
}

fn exited(mut p: Pod, code: i32, finished: i64) -> Pod {
    p.status
        .get_or_insert_with(Default::default)
        .container_statuses = Some(vec![ContainerStatus {
        name: "main".into(),
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                finished_at: Some(Time(at(finished))),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        }),
        ..ContainerStatus::default()
    }]);
    p
}

fn controller(j: Job, pods: Vec<Pod>, now: i64) -> JobController<JobRecorder> {
    let mut pw: Writer<Pod> = Writer::default();
    for p in pods {
        pw.apply_watcher_event(&Event::Apply(p));
    }
    let mut jw: Writer<Job> = Writer::default();
    jw.apply_watcher_event(&Event::Apply(j));
    JobController::new(
        Arc::new(JobRecorder::new()),
        pw.as_reader(),
        jw.as_reader(),
        Arc::new(move || at(now)),
    )
}

fn key() -> Key {
    Key::new("default", "pi")
}

fn last_status(c: &JobController<JobRecorder>) -> JobStatus {
    c.control
        .last_job()
        .and_then(|j| j.status)
        .expect("a status was written")
}

fn cond<'a>(s: &'a JobStatus, t: &str) -> Option<&'a JobCondition> {
    s.conditions.as_ref()?.iter().find(|c| c.type_ == t)
}

#[tokio::test]
async fn a_new_job_creates_parallelism_pods_with_the_tracking_finalizer_and_sets_start_time() {
    let c = controller(job(Some(5), 2), vec![], 10);
    c.reconcile(&key()).await.expect("sync");
    let created = c.control.pods.created_pods();
    assert_eq!(created.len(), 2, "parallelism 2 of 5 completions");
    let p = &created[0];
    assert_eq!(p.metadata.generate_name.as_deref(), Some("pi-"));
    assert!(has_tracking_finalizer(p));
    let owner = &p.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("Job", Some(true)));
    assert_eq!(p.metadata.labels, labels());
    let s = last_status(&c);
    assert_eq!(s.active, Some(2));
    assert_eq!(s.start_time, Some(Time(at(10))));
    assert_eq!(
        c.control.events(),
        vec![
            "SuccessfulCreate: Created pod: pi-0",
            "SuccessfulCreate: Created pod: pi-1"
        ]
    );
    // Expectations: a second sync before the cache sees the pods creates nothing.
    c.reconcile(&key()).await.expect("sync");
    assert_eq!(c.control.pods.created_pods().len(), 2);
}

#[tokio::test]
async fn succeeded_pods_go_through_uncounted_then_the_counter_and_the_job_completes() {
    let mut j = job(Some(2), 2);
    j.status = Some(JobStatus {
        start_time: Some(Time(at(0))),
        active: Some(2),
        ..JobStatus::default()
    });
    let pods = vec![
        pod(&j, "a", "Succeeded", None),
        pod(&j, "b", "Succeeded", None),
    ];
    let c = controller(j, pods, 30);
    c.reconcile(&key()).await.expect("sync");
    let statuses = c.control.job_statuses();
    assert_eq!(
        statuses.len(),
        2,
        "uncounted write, then counted + Complete"
    );
    let first = statuses[0].status.clone().expect("status");
    let unc = first.uncounted_terminated_pods.clone().expect("uncounted");
    assert_eq!(
        unc.succeeded,
        Some(vec!["uid-a".to_string(), "uid-b".to_string()])
    );
    assert_eq!(
        first.succeeded, None,
        "not counted before the finalizers go"
    );
    assert_eq!(
        cond(&first, "SuccessCriteriaMet").and_then(|c| c.reason.as_deref()),
        Some("CompletionsReached")
    );
    let removed: Vec<JobAction> = c
        .control
        .actions()
        .into_iter()
        .filter(|a| matches!(a, JobAction::RemoveFinalizer { .. }))
        .collect();
    assert_eq!(removed.len(), 2);
    let s = last_status(&c);
    assert_eq!(s.succeeded, Some(2));
    assert_eq!(s.active, None);
    assert_eq!(
        s.uncounted_terminated_pods,
        Some(UncountedTerminatedPods::default())
    );
    let complete = cond(&s, "Complete").expect("Complete");
    assert_eq!(complete.status, "True");
    assert_eq!(complete.reason.as_deref(), Some("CompletionsReached"));
    assert_eq!(
        complete.message.as_deref(),
        Some("Reached expected number of succeeded pods")
    );
    assert_eq!(s.completion_time, Some(Time(at(30))));
    assert!(
        c.control
            .events()
            .contains(&"Completed: Job completed".to_string())
    );
}

#[tokio::test]
async fn a_pod_whose_finalizer_we_removed_is_not_counted_twice_by_a_lagging_cache() {
    let mut j = job(Some(3), 1);
    j.status = Some(JobStatus {
        start_time: Some(Time(at(0))),
        active: Some(1),
        ..JobStatus::default()
    });
    let c = controller(j, vec![pod(&job(Some(3), 1), "a", "Succeeded", None)], 30);
    c.reconcile(&key()).await.expect("sync");
    assert_eq!(last_status(&c).succeeded, Some(1));
    // The caches are unchanged (neither the status write nor the finalizer removal seen yet).
    c.reconcile(&key()).await.expect("sync");
    assert_eq!(last_status(&c).succeeded, Some(1), "still one success");
}

#[tokio::test]
async fn failures_past_backoff_limit_fail_the_job_after_failure_target() {
    let mut j = job(Some(1), 1);
    j.spec.as_mut().expect("spec").backoff_limit = Some(1);
    j.status = Some(JobStatus {
        start_time: Some(Time(at(0))),
        failed: Some(1),
        ..JobStatus::default()
    });
    let pods = vec![exited(pod(&j, "b", "Failed", None), 1, 20)];
    let c = controller(j, pods, 30);
    c.reconcile(&key()).await.expect("sync");
    let statuses = c.control.job_statuses();
    let first = statuses[0].status.clone().expect("status");
    let target = cond(&first, "FailureTarget").expect("FailureTarget first");
    assert_eq!(target.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert!(
        cond(&first, "Failed").is_none(),
        "Failed only after finalizers go"
    );
    let s = last_status(&c);
    assert_eq!(s.failed, Some(2));
    let failed = cond(&s, "Failed").expect("Failed");
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(
        failed.message.as_deref(),
        Some("Job has reached the specified backoff limit")
    );
    assert!(s.completion_time.is_none());
    assert!(c.control.pods.created_pods().is_empty(), "no replacement");
    assert!(c.control.events().contains(
        &"BackoffLimitExceeded: Job has reached the specified backoff limit".to_string()
    ));
}

#[tokio::test]
async fn a_failed_job_deletes_running_pods_and_waits_for_them_before_failed() {
    let mut j = job(Some(3), 2);
    j.spec.as_mut().expect("spec").backoff_limit = Some(0);
    j.status = Some(JobStatus {
        start_time: Some(Time(at(0))),
        active: Some(2),
        ..JobStatus::default()
    });
    let pods = vec![
        exited(pod(&j, "a", "Failed", None), 2, 20),
        pod(&j, "b", "Running", None),
    ];
    let c = controller(j, pods, 30);
    c.reconcile(&key()).await.expect("sync");
    assert!(c.control.pods.writes().contains(&Action::DeletePod {
        namespace: "default".into(),
        name: "b".into()
    }));
    let s = last_status(&c);
    assert!(cond(&s, "FailureTarget").is_some());
    assert!(cond(&s, "Failed").is_none(), "a pod is still terminating");
    assert_eq!(s.terminating, Some(1));
}

#[tokio::test]
async fn active_deadline_fails_the_job_and_otherwise_requeues_for_it() {
    let mut j = job(Some(1), 1);
    j.spec.as_mut().expect("spec").active_deadline_seconds = Some(60);
    j.status = Some(JobStatus {
        start_time: Some(Time(at(0))),
        active: Some(1),
        ..JobStatus::default()
    });
    let running = pod(&j, "a", "Running", None);
    let c = controller(j.clone(), vec![running.clone()], 45);
    let requeue = c.reconcile(&key()).await.expect("sync");
    assert_eq!(requeue, Some(Duration::from_secs(15)));
    let c = controller(j, vec![running], 61);
    c.reconcile(&key()).await.expect("sync");
    let s = last_status(&c);
    let t = cond(&s, "FailureTarget").expect("FailureTarget");
    assert_eq!(t.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        t.message.as_deref(),
        Some("Job was active longer than specified deadline")
    );
}

fn with_policy(mut j: Job, action: &str, codes: Vec<i32>) -> Job {
    j.spec.as_mut().expect("spec").pod_failure_policy = Some(PodFailurePolicy {
        rules: vec![PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: None,
                operator: "In".into(),
                values: codes,
            }),
            on_pod_conditions: None,
        }],
    });
    j
}

#[tokio::test]
async fn pod_failure_policy_fail_job_fails_at_once_with_upstreams_message() {
    let mut j = with_policy(job(Some(3), 1), "FailJob", vec![42]);
    j.status = Some(JobStatus {
        start_time: Some(Time(at(0))),
        ..JobStatus::default()
    });
    let c = controller(
        j.clone(),
        vec![exited(pod(&j, "a", "Failed", None), 42, 5)],
        10,
    );
    c.reconcile(&key()).await.expect("sync");
    let s = last_status(&c);
    let failed = cond(&s, "Failed").expect("Failed");
    assert_eq!(failed.reason.as_deref(), Some("PodFailurePolicy"));
    assert_eq!(
        failed.message.as_deref(),
        Some(
            "Container main for pod default/a failed with exit code 42 matching FailJob rule at index 0"
        )
    );
}

#[tokio::test]
async fn pod_failure_policy_ignore_does_not_count_toward_backoff_limit() {
    let mut j = with_policy(job(Some(1), 1), "Ignore", vec![137]);
    j.spec.as_mut().expect("spec").backoff_limit = Some(0);
    j.status = Some(JobStatus {
        start_time: Some(Time(at(0))),
        ..JobStatus::default()
    });
    let c = controller(
        j.clone(),
        vec![exited(pod(&j, "a", "Failed", None), 137, 5)],
        100,
    );
    c.reconcile(&key()).await.expect("sync");
    let s = last_status(&c);
    assert!(cond(&s, "FailureTarget").is_none());
    assert_eq!(s.failed, None, "ignored failure not counted");
    assert_eq!(c.control.pods.created_pods().len(), 1, "replaced");
}

#[tokio::test]
async fn replacement_pods_wait_out_the_failure_backoff() {
    let mut j = job(Some(1), 1);
    j.status = Some(JobStatus {
        start_time: Some(Time(at(0))),
        ..JobStatus::default()
    });
    let failed = exited(pod(&j, "a", "Failed", None), 1, 100);
    let c = controller(j.clone(), vec![failed.clone()], 104);
    let requeue = c.reconcile(&key()).await.expect("sync");
    assert_eq!(
        requeue,
        Some(Duration::from_secs(6)),
        "10 s after the failure"
    );
    assert!(c.control.pods.created_pods().is_empty());
    assert_eq!(last_status(&c).failed, Some(1));

    // Two failures: 20 s.
    let rec = BackoffRecord {
        failures: 2,
        last_failure: Some(at(100)),
    };
    assert_eq!(rec.remaining(at(105)), Duration::from_secs(15));
    // Capped at ten minutes, and over once that passed.
    let rec = BackoffRecord {
        failures: 12,
        last_failure: Some(at(0)),
    };
    assert_eq!(rec.remaining(at(0)), MAX_POD_FAILURE_BACKOFF);
    assert_eq!(rec.remaining(at(600)), Duration::ZERO);

    let c = controller(j, vec![failed], 111);
    assert_eq!(c.reconcile(&key()).await.expect("sync"), None);
    assert_eq!(
        c.control.pods.created_pods().len(),
        1,
        "backoff over: replaced"
    );
}

#[tokio::test]
async fn indexed_jobs_create_missing_indexes_with_annotation_label_hostname_and_env() {
    let mut j = indexed(4, 3);
    j.status = Some(JobStatus {
        start_time: Some(Time(at(0))),
        completed_indexes: Some("0".into()),
        succeeded: Some(1),
        ..JobStatus::default()
    });
    let running = pod(&j, "pi-1-x", "Running", Some(1));
    let c = controller(j, vec![running], 10);
    c.reconcile(&key()).await.expect("sync");
    let created = c.control.pods.created_pods();
    let idx: Vec<Option<i32>> = created.iter().map(completion_index).collect();
    assert_eq!(idx, vec![Some(2), Some(3)], "lowest pending indexes");
    let p = &created[0];
    assert_eq!(p.metadata.generate_name.as_deref(), Some("pi-2-"));
    assert_eq!(
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(INDEX_KEY))
            .map(String::as_str),
        Some("2")
    );
    let spec = p.spec.as_ref().expect("spec");
    assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
    let env = &spec.containers[0].env.as_ref().expect("env")[0];
    assert_eq!(env.name, "JOB_COMPLETION_INDEX");
    assert_eq!(
        env.value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str()),
        Some("metadata.annotations['batch.kubernetes.io/job-completion-index']")
    );
}

#[tokio::test]
async fn indexed_successes_are_recorded_in_completed_indexes() {
    let mut j = indexed(3, 3);
    j.status = Some(JobStatus {
        start_time: Some(Time(at(0))),
        completed_indexes: Some("0".into()),
        succeeded: Some(1),
        active: Some(2),
        ..JobStatus::default()
    });
    let pods = vec![
        pod(&j, "pi-1-x", "Succeeded", Some(1)),
        pod(&j, "pi-2-x", "Succeeded", Some(2)),
    ];
    let c = controller(j, pods, 10);
    c.reconcile(&key()).await.expect("sync");
    let s = last_status(&c);
    assert_eq!(s.completed_indexes.as_deref(), Some("0-2"));
    assert_eq!(s.succeeded, Some(3));
    assert!(cond(&s, "Complete").is_some());
}

#[tokio::test]
async fn suspending_deletes_active_pods_and_sets_the_suspended_condition() {
    let mut j = job(Some(2), 2);
    j.spec.as_mut().expect("spec").suspend = Some(true);
    j.status = Some(JobStatus {
        start_time: Some(Time(at(0))),
        active: Some(1),
        ..JobStatus::default()
    });
    let c = controller(j.clone(), vec![pod(&j, "a", "Running", None)], 10);
    c.reconcile(&key()).await.expect("sync");
    assert!(
        c.control
            .actions()
            .contains(&JobAction::RemoveFinalizer { pod: "a".into() })
    );
    assert!(c.control.pods.writes().contains(&Action::DeletePod {
        namespace: "default".into(),
        name: "a".into()
    }));
    let s = last_status(&c);
    let sus = cond(&s, "Suspended").expect("Suspended");
    assert_eq!(
        (sus.status.as_str(), sus.reason.as_deref()),
        ("True", Some("JobSuspended"))
    );
    assert!(
        c.control
            .events()
            .contains(&"Suspended: Job suspended".to_string())
    );
}

#[tokio::test]
async fn a_finished_job_is_left_alone() {
    let mut j = job(Some(1), 1);
    j.status = Some(JobStatus {
        conditions: Some(vec![condition(
            "Complete",
            "True",
            "CompletionsReached",
            "x",
            at(0),
        )]),
        ..JobStatus::default()
    });
    let c = controller(j, vec![], 10);
    c.reconcile(&key()).await.expect("sync");
    assert!(c.control.actions().is_empty());
    assert!(c.control.pods.created_pods().is_empty());
}

#[test]
fn completed_indexes_render_and_parse_as_intervals() {
    let set: BTreeSet<i32> = [0, 1, 2, 5, 7, 8].into_iter().collect();
    // A two-index run is written as a pair, as upstream's orderedIntervals.String.
    assert_eq!(format_indexes(&set), "0-2,5,7,8");
    assert_eq!(
        parse_indexes("0-2,5,7-8", 8),
        [0, 1, 2, 5, 7].into_iter().collect()
    );
}

/// An Indexed Job with backoffLimitPerIndex (backoffLimit left to its default), started.
fn per_index(completions: i32, parallelism: i32, limit: i32) -> Job {
    let mut j = indexed(completions, parallelism);
    let spec = j.spec.as_mut().expect("spec");
    spec.backoff_limit_per_index = Some(limit);
    spec.backoff_limit = None;
    j.status = Some(JobStatus {
        start_time: Some(Time(at(0))),
        ..JobStatus::default()
    });
    j
}

fn failure_count(mut p: Pod, n: i32) -> Pod {
    p.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(INDEX_FAILURE_COUNT.into(), n.to_string());
    p
}

fn annotation<'a>(p: &'a Pod, key: &str) -> Option<&'a str> {
    p.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn finalizer_removed(c: &JobController<JobRecorder>, pod: &str) -> bool {
    c.control
        .actions()
        .contains(&JobAction::RemoveFinalizer { pod: pod.into() })
}

fn deleted(c: &JobController<JobRecorder>, pod: &str) -> bool {
    c.control.pods.writes().contains(&Action::DeletePod {
        namespace: "default".into(),
        name: pod.into(),
    })
}

#[tokio::test]
async fn a_failed_index_within_its_limit_is_retried_with_the_failure_count_annotation() {
    let j = per_index(2, 2, 1);
    let pods = vec![
        exited(failure_count(pod(&j, "pi-0-a", "Failed", Some(0)), 0), 1, 5),
        failure_count(pod(&j, "pi-1-a", "Running", Some(1)), 0),
    ];
    let c = controller(j, pods, 100);
    c.reconcile(&key()).await.expect("sync");
    let created = c.control.pods.created_pods();
    assert_eq!(created.len(), 1, "index 0 retried");
    assert_eq!(completion_index(&created[0]), Some(0));
    assert_eq!(annotation(&created[0], INDEX_FAILURE_COUNT), Some("1"));
    assert!(
        !finalizer_removed(&c, "pi-0-a"),
        "the failed pod is kept until its replacement is seen"
    );
    let s = last_status(&c);
    assert_eq!(s.failed_indexes.as_deref(), Some(""));
    assert!(cond(&s, "FailureTarget").is_none());
}

#[tokio::test]
async fn first_pods_of_a_per_index_job_carry_a_zero_failure_count() {
    let j = per_index(2, 2, 1);
    let c = controller(j, vec![], 10);
    c.reconcile(&key()).await.expect("sync");
    let created = c.control.pods.created_pods();
    assert_eq!(created.len(), 2);
    for p in &created {
        assert_eq!(annotation(p, INDEX_FAILURE_COUNT), Some("0"));
    }
}

#[tokio::test]
async fn an_index_past_its_limit_is_recorded_failed_and_not_retried() {
    let j = per_index(3, 3, 1);
    let pods = vec![
        exited(failure_count(pod(&j, "pi-0-b", "Failed", Some(0)), 1), 1, 5),
        failure_count(pod(&j, "pi-1-a", "Running", Some(1)), 0),
        failure_count(pod(&j, "pi-2-a", "Running", Some(2)), 0),
    ];
    let c = controller(j, pods, 100);
    c.reconcile(&key()).await.expect("sync");
    assert!(
        c.control.pods.created_pods().is_empty(),
        "index 0 not retried"
    );
    assert!(finalizer_removed(&c, "pi-0-b"));
    let s = last_status(&c);
    assert_eq!(s.failed_indexes.as_deref(), Some("0"));
    assert_eq!(s.failed, Some(1));
    assert!(
        cond(&s, "FailureTarget").is_none(),
        "other indexes still run"
    );
}

#[tokio::test]
async fn a_job_whose_indexes_all_finished_with_one_failed_fails_with_failed_indexes() {
    let mut j = per_index(3, 3, 0);
    if let Some(s) = j.status.as_mut() {
        s.completed_indexes = Some("1,2".into());
        s.succeeded = Some(2);
    }
    let pods = vec![exited(
        failure_count(pod(&j, "pi-0-a", "Failed", Some(0)), 0),
        1,
        5,
    )];
    let c = controller(j, pods, 100);
    c.reconcile(&key()).await.expect("sync");
    let s = last_status(&c);
    assert_eq!(s.failed_indexes.as_deref(), Some("0"));
    let failed = cond(&s, "Failed").expect("Failed");
    assert_eq!(failed.reason.as_deref(), Some("FailedIndexes"));
    assert_eq!(failed.message.as_deref(), Some("Job has failed indexes"));
    assert_eq!(
        cond(&s, "FailureTarget").and_then(|c| c.reason.as_deref()),
        Some("FailedIndexes")
    );
}

#[tokio::test]
async fn more_failed_indexes_than_max_failed_indexes_fails_the_job_and_stops_its_pods() {
    let mut j = per_index(4, 4, 0);
    j.spec.as_mut().expect("spec").max_failed_indexes = Some(0);
    let pods = vec![
        exited(failure_count(pod(&j, "pi-0-a", "Failed", Some(0)), 0), 1, 5),
        failure_count(pod(&j, "pi-1-a", "Running", Some(1)), 0),
    ];
    let c = controller(j, pods, 100);
    c.reconcile(&key()).await.expect("sync");
    assert!(deleted(&c, "pi-1-a"), "remaining pods are terminated");
    let s = last_status(&c);
    let target = cond(&s, "FailureTarget").expect("FailureTarget");
    assert_eq!(target.reason.as_deref(), Some("MaxFailedIndexesExceeded"));
    assert_eq!(
        target.message.as_deref(),
        Some("Job has exceeded the specified maximal number of failed indexes")
    );
    assert!(cond(&s, "Failed").is_none(), "a pod is still terminating");
}

#[tokio::test]
async fn pod_failure_policy_fail_index_fails_the_index_at_its_first_failure() {
    let j = with_policy(per_index(2, 2, 3), "FailIndex", vec![42]);
    let pods = vec![
        exited(
            failure_count(pod(&j, "pi-0-a", "Failed", Some(0)), 0),
            42,
            5,
        ),
        failure_count(pod(&j, "pi-1-a", "Running", Some(1)), 0),
    ];
    let c = controller(j, pods, 100);
    c.reconcile(&key()).await.expect("sync");
    assert!(c.control.pods.created_pods().is_empty());
    assert_eq!(last_status(&c).failed_indexes.as_deref(), Some("0"));
}

#[tokio::test]
async fn an_ignored_failure_is_retried_under_the_ignored_count() {
    let j = with_policy(per_index(1, 1, 0), "Ignore", vec![137]);
    let pods = vec![exited(
        failure_count(pod(&j, "pi-0-a", "Failed", Some(0)), 0),
        137,
        5,
    )];
    let c = controller(j, pods, 100);
    c.reconcile(&key()).await.expect("sync");
    let created = c.control.pods.created_pods();
    assert_eq!(
        created.len(),
        1,
        "an ignored failure does not use up the index"
    );
    assert_eq!(annotation(&created[0], INDEX_FAILURE_COUNT), Some("0"));
    assert_eq!(
        annotation(&created[0], INDEX_IGNORED_FAILURE_COUNT),
        Some("1")
    );
}

#[tokio::test]
async fn an_index_waits_out_its_own_backoff_before_it_is_retried() {
    // Second failure of index 0: 20 s after it finished at t=100.
    let j = per_index(2, 2, 5);
    let pods = vec![
        exited(
            failure_count(pod(&j, "pi-0-b", "Failed", Some(0)), 1),
            1,
            100,
        ),
        failure_count(pod(&j, "pi-1-a", "Running", Some(1)), 0),
    ];
    let c = controller(j.clone(), pods.clone(), 105);
    let requeue = c.reconcile(&key()).await.expect("sync");
    assert!(c.control.pods.created_pods().is_empty());
    assert_eq!(requeue, Some(Duration::from_secs(15)));
    let c = controller(j, pods, 121);
    c.reconcile(&key()).await.expect("sync");
    let created = c.control.pods.created_pods();
    assert_eq!(created.len(), 1);
    assert_eq!(annotation(&created[0], INDEX_FAILURE_COUNT), Some("2"));
}

fn with_success_policy(mut j: Job, rules: Vec<SuccessPolicyRule>) -> Job {
    j.spec.as_mut().expect("spec").success_policy = Some(SuccessPolicy { rules });
    j.status = Some(JobStatus {
        start_time: Some(Time(at(0))),
        ..JobStatus::default()
    });
    j
}

fn rule(indexes: Option<&str>, count: Option<i32>) -> SuccessPolicyRule {
    SuccessPolicyRule {
        succeeded_indexes: indexes.map(String::from),
        succeeded_count: count,
    }
}

#[test]
fn success_policy_rules_match_as_upstream() {
    let j = with_success_policy(
        indexed(10, 10),
        vec![rule(Some("0-3"), Some(2)), rule(None, Some(3))],
    );
    let set = |v: &[i32]| v.iter().copied().collect::<BTreeSet<i32>>();
    assert_eq!(match_success_policy(&j, &set(&[1])), None);
    assert_eq!(
        match_success_policy(&j, &set(&[1, 3])).as_deref(),
        Some("Matched rules at index 0")
    );
    assert_eq!(
        match_success_policy(&j, &set(&[5, 6, 7])).as_deref(),
        Some("Matched rules at index 1")
    );
    // Indexes alone: all of them must have succeeded.
    let j = with_success_policy(indexed(10, 10), vec![rule(Some("0,2"), None)]);
    assert_eq!(match_success_policy(&j, &set(&[0, 1])), None);
    assert!(match_success_policy(&j, &set(&[0, 2])).is_some());
    // No policy on a NonIndexed Job.
    let j = with_success_policy(job(Some(3), 3), vec![rule(None, Some(1))]);
    assert_eq!(match_success_policy(&j, &set(&[0])), None);
}

#[tokio::test]
async fn a_met_success_policy_terminates_the_rest_and_then_completes() {
    let j = with_success_policy(indexed(3, 3), vec![rule(Some("0"), None)]);
    let pods = vec![
        pod(&j, "pi-0-a", "Succeeded", Some(0)),
        pod(&j, "pi-1-a", "Running", Some(1)),
        pod(&j, "pi-2-a", "Running", Some(2)),
    ];
    let c = controller(j.clone(), pods, 10);
    c.reconcile(&key()).await.expect("sync");
    assert!(deleted(&c, "pi-1-a") && deleted(&c, "pi-2-a"));
    assert!(c.control.pods.created_pods().is_empty());

    // The lingering pods are gone: SuccessCriteriaMet, then Complete with the same reason.
    let c = controller(
        j,
        vec![pod(&indexed(3, 3), "pi-0-a", "Succeeded", Some(0))],
        20,
    );
    c.reconcile(&key()).await.expect("sync");
    let first = c.control.job_statuses()[0].status.clone().expect("status");
    let met = cond(&first, "SuccessCriteriaMet").expect("SuccessCriteriaMet first");
    assert_eq!(met.reason.as_deref(), Some("SuccessPolicy"));
    assert_eq!(met.message.as_deref(), Some("Matched rules at index 0"));
    assert!(cond(&first, "Complete").is_none());
    let s = last_status(&c);
    let complete = cond(&s, "Complete").expect("Complete");
    assert_eq!(complete.reason.as_deref(), Some("SuccessPolicy"));
    assert_eq!(
        complete.message.as_deref(),
        Some("Matched rules at index 0")
    );
    assert_eq!(s.completed_indexes.as_deref(), Some("0"));
    assert!(s.completion_time.is_some());
}
