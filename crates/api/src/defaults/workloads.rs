//! Defaults of the pod-owning kinds: ReplicationController, Deployment, ReplicaSet, StatefulSet,
//! DaemonSet, Job and CronJob.

use serde_json::{Value, json};

use super::pod::default_pod_template;
use super::{
    array_items, child_obj, default_persistent_volume_claim, existing_obj, is_empty_map, is_unset,
    set_missing, str_at,
};

pub(super) fn default_replication_controller(rc: &mut Value) {
    let template_labels = rc.pointer("/spec/template/metadata/labels").cloned();
    if let Some(labels) = template_labels.filter(|l| !is_empty_map(Some(l))) {
        if let Some(spec) = child_obj(rc, "spec")
            && is_empty_map(spec.get("selector"))
        {
            spec["selector"] = labels.clone();
        }
        if let Some(meta) = child_obj(rc, "metadata")
            && is_empty_map(meta.get("labels"))
        {
            meta["labels"] = labels;
        }
    }
    let Some(spec) = child_obj(rc, "spec") else {
        return;
    };
    set_missing(spec, "replicas", json!(1));
    if let Some(t) = existing_obj(spec, "template") {
        default_pod_template(t);
    }
}

pub(super) fn default_deployment(d: &mut Value) {
    let Some(spec) = child_obj(d, "spec") else {
        return;
    };
    set_missing(spec, "replicas", json!(1));
    if let Some(strategy) = child_obj(spec, "strategy") {
        set_missing(strategy, "type", json!("RollingUpdate"));
        if str_at(strategy, "type") == Some("RollingUpdate")
            && let Some(ru) = child_obj(strategy, "rollingUpdate")
        {
            set_missing(ru, "maxUnavailable", json!("25%"));
            set_missing(ru, "maxSurge", json!("25%"));
        }
    }
    set_missing(spec, "revisionHistoryLimit", json!(10));
    set_missing(spec, "progressDeadlineSeconds", json!(600));
    if let Some(t) = child_obj(spec, "template") {
        default_pod_template(t);
    }
}

pub(super) fn default_replica_set(rs: &mut Value) {
    let Some(spec) = child_obj(rs, "spec") else {
        return;
    };
    set_missing(spec, "replicas", json!(1));
    if let Some(t) = child_obj(spec, "template") {
        default_pod_template(t);
    }
}

pub(super) fn default_stateful_set(sts: &mut Value) {
    let Some(spec) = child_obj(sts, "spec") else {
        return;
    };
    set_missing(spec, "replicas", json!(1));
    set_missing(spec, "podManagementPolicy", json!("OrderedReady"));
    if let Some(strategy) = child_obj(spec, "updateStrategy") {
        set_missing(strategy, "type", json!("RollingUpdate"));
        if str_at(strategy, "type") == Some("RollingUpdate")
            && let Some(ru) = child_obj(strategy, "rollingUpdate")
        {
            set_missing(ru, "partition", json!(0));
        }
    }
    set_missing(spec, "revisionHistoryLimit", json!(10));
    if let Some(policy) = child_obj(spec, "persistentVolumeClaimRetentionPolicy") {
        set_missing(policy, "whenDeleted", json!("Retain"));
        set_missing(policy, "whenScaled", json!("Retain"));
    }
    for claim in array_items(spec, "volumeClaimTemplates") {
        default_persistent_volume_claim(claim);
    }
    if let Some(t) = child_obj(spec, "template") {
        default_pod_template(t);
    }
}

pub(super) fn default_daemon_set(ds: &mut Value) {
    let Some(spec) = child_obj(ds, "spec") else {
        return;
    };
    if let Some(strategy) = child_obj(spec, "updateStrategy") {
        set_missing(strategy, "type", json!("RollingUpdate"));
        if str_at(strategy, "type") == Some("RollingUpdate")
            && let Some(ru) = child_obj(strategy, "rollingUpdate")
        {
            set_missing(ru, "maxUnavailable", json!(1));
            set_missing(ru, "maxSurge", json!(0));
        }
    }
    set_missing(spec, "revisionHistoryLimit", json!(10));
    if let Some(t) = child_obj(spec, "template") {
        default_pod_template(t);
    }
}

pub(super) fn default_job(job: &mut Value) {
    let template_labels = job.pointer("/spec/template/metadata/labels").cloned();
    if let Some(labels) = template_labels.filter(|l| !is_empty_map(Some(l)))
        && let Some(meta) = child_obj(job, "metadata")
        && is_empty_map(meta.get("labels"))
    {
        meta["labels"] = labels;
    }
    let Some(spec) = child_obj(job, "spec") else {
        return;
    };
    if is_unset(spec.get("completions")) && is_unset(spec.get("parallelism")) {
        spec["completions"] = json!(1);
        spec["parallelism"] = json!(1);
    }
    set_missing(spec, "parallelism", json!(1));
    let backoff = if is_unset(spec.get("backoffLimitPerIndex")) {
        6
    } else {
        i64::from(i32::MAX)
    };
    set_missing(spec, "backoffLimit", json!(backoff));
    set_missing(spec, "completionMode", json!("NonIndexed"));
    set_missing(spec, "suspend", json!(false));
    set_missing(spec, "manualSelector", json!(false));
    let replacement = if is_unset(spec.get("podFailurePolicy")) {
        "TerminatingOrFailed"
    } else {
        "Failed"
    };
    set_missing(spec, "podReplacementPolicy", json!(replacement));
    if let Some(pfp) = existing_obj(spec, "podFailurePolicy") {
        for rule in array_items(pfp, "rules") {
            for cond in array_items(rule, "onPodConditions") {
                set_missing(cond, "status", json!("True"));
            }
        }
    }
    if let Some(t) = child_obj(spec, "template") {
        default_pod_template(t);
    }
}

pub(super) fn default_cron_job(cj: &mut Value) {
    let Some(spec) = child_obj(cj, "spec") else {
        return;
    };
    set_missing(spec, "concurrencyPolicy", json!("Allow"));
    set_missing(spec, "suspend", json!(false));
    set_missing(spec, "successfulJobsHistoryLimit", json!(3));
    set_missing(spec, "failedJobsHistoryLimit", json!(1));
    // SetDefaults_Job is registered for Job only: a job template gets PodSpec defaults alone.
    if let Some(t) = child_obj(spec, "jobTemplate")
        .and_then(|jt| child_obj(jt, "spec"))
        .and_then(|js| child_obj(js, "template"))
    {
        default_pod_template(t);
    }
}
