//! Validation of the pod-owning kinds: PodTemplate, ReplicationController, Deployment,
//! ReplicaSet, StatefulSet, DaemonSet, Job and CronJob.

use serde_json::Value;

use super::selector::{Selector, is_empty_selector, validate_label_selector};
use super::{Errors, FieldError, Path, immutable, meta, nonnegative, obj_or_null, pod, str_of};

const SELECTOR_MISMATCH: &str = "`selector` does not match template `labels`";

pub(crate) fn validate_pod_template(obj: &Value, errs: &mut Errors) {
    pod::validate_pod_template_spec(obj_or_null(obj, "template"), &Path::new("template"), errs);
}

fn template_labels(template: &Value) -> Value {
    template
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(Value::Null)
}

/// The selector-match error at `<template>.metadata.labels`, if the selector misses the labels.
fn check_selector_matches(sel: &Selector, template: &Value, tpath: &Path, errs: &mut Errors) {
    let labels = template_labels(template);
    if !sel.matches(labels.as_object()) {
        errs.push(FieldError::invalid(
            &tpath.child("metadata").child("labels"),
            labels,
            SELECTOR_MISMATCH,
        ));
    }
}

/// `ValidatePodTemplateSpecForReplicaSet` (also used by Deployments).
fn validate_template_for_replica_set(
    template: &Value,
    sel: &Selector,
    tpath: &Path,
    errs: &mut Errors,
) {
    if !template.is_object() {
        errs.push(FieldError::required(tpath, ""));
        return;
    }
    if !sel.is_empty() {
        check_selector_matches(sel, template, tpath, errs);
    }
    pod::validate_pod_template_spec(template, tpath, errs);
    require_restart_always(template, tpath, errs);
    if template
        .pointer("/spec/activeDeadlineSeconds")
        .is_some_and(|v| !v.is_null())
    {
        errs.push(FieldError::invalid(
            &tpath.child("spec").child("activeDeadlineSeconds"),
            template["spec"]["activeDeadlineSeconds"].clone(),
            "activeDeadlineSeconds in ReplicaSet is not Supported",
        ));
    }
}

fn require_restart_always(template: &Value, tpath: &Path, errs: &mut Errors) {
    let policy = template
        .pointer("/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if policy != "Always" {
        errs.push(FieldError::not_supported(
            &tpath.child("spec").child("restartPolicy"),
            policy,
            &["Always"],
        ));
    }
}

/// Shared selector checks of Deployment/ReplicaSet/StatefulSet; returns the converted selector.
fn validate_required_selector(
    spec: &Value,
    spath: &Path,
    kind_word: &str,
    errs: &mut Errors,
) -> Option<Selector> {
    let sel = obj_or_null(spec, "selector");
    let sel_path = spath.child("selector");
    if sel.is_null() {
        errs.push(FieldError::required(&sel_path, ""));
    } else {
        validate_label_selector(sel, &sel_path, errs);
        if is_empty_selector(sel) {
            errs.push(FieldError::invalid(
                &sel_path,
                sel.clone(),
                &format!("empty selector is invalid for {kind_word}"),
            ));
        }
    }
    match Selector::parse(sel) {
        Ok(s) => Some(s),
        Err(()) => {
            errs.push(FieldError::invalid(
                &sel_path,
                sel.clone(),
                "invalid label selector",
            ));
            None
        }
    }
}

pub(crate) fn validate_replication_controller(obj: &Value, errs: &mut Errors) {
    let spec = obj_or_null(obj, "spec");
    let spath = Path::new("spec");
    nonnegative(spec, "replicas", &spath, errs);
    nonnegative(spec, "minReadySeconds", &spath, errs);
    let selector = spec.get("selector").and_then(Value::as_object);
    if selector.is_none_or(|s| s.is_empty()) {
        errs.push(FieldError::required(&spath.child("selector"), ""));
    } else {
        meta::validate_labels(spec.get("selector"), &spath.child("selector"), errs);
    }
    let template = obj_or_null(spec, "template");
    let tpath = spath.child("template");
    if !template.is_object() {
        errs.push(FieldError::required(&tpath, ""));
        return;
    }
    if let Some(sel) = selector.filter(|s| !s.is_empty()) {
        let labels = template_labels(template);
        let matches = sel.iter().all(|(k, v)| labels.get(k) == Some(v));
        if !matches {
            errs.push(FieldError::invalid(
                &tpath.child("metadata").child("labels"),
                labels,
                SELECTOR_MISMATCH,
            ));
        }
    }
    pod::validate_pod_template_spec(template, &tpath, errs);
    require_restart_always(template, &tpath, errs);
}

pub(crate) fn validate_deployment(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = obj_or_null(obj, "spec");
    let spath = Path::new("spec");
    nonnegative(spec, "replicas", &spath, errs);
    if let Some(sel) = validate_required_selector(spec, &spath, "deployment", errs) {
        let tpath = spath.child("template");
        validate_template_for_replica_set(obj_or_null(spec, "template"), &sel, &tpath, errs);
    }
    validate_deployment_strategy(
        obj_or_null(spec, "strategy"),
        &spath.child("strategy"),
        errs,
    );
    nonnegative(spec, "minReadySeconds", &spath, errs);
    nonnegative(spec, "revisionHistoryLimit", &spath, errs);
    if let Some(pds) = spec.get("progressDeadlineSeconds").and_then(Value::as_i64) {
        nonnegative(spec, "progressDeadlineSeconds", &spath, errs);
        let min_ready = spec
            .get("minReadySeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if pds <= min_ready {
            errs.push(FieldError::invalid(
                &spath.child("progressDeadlineSeconds"),
                pds,
                "must be greater than minReadySeconds",
            ));
        }
    }
    if let Some(old) = old {
        immutable(spec, obj_or_null(old, "spec"), "selector", &spath, errs);
    }
}

fn validate_deployment_strategy(strategy: &Value, path: &Path, errs: &mut Errors) {
    let ru = obj_or_null(strategy, "rollingUpdate");
    match str_of(strategy, "type") {
        "Recreate" => {
            if !ru.is_null() {
                errs.push(FieldError::forbidden(
                    &path.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => {
            if ru.is_null() {
                errs.push(FieldError::required(
                    &path.child("rollingUpdate"),
                    "this should be defaulted and never be nil",
                ));
            } else {
                validate_rolling_update(ru, &path.child("rollingUpdate"), errs);
            }
        }
        _ => errs.push(FieldError::not_supported(
            path,
            strategy.clone(),
            &["Recreate", "RollingUpdate"],
        )),
    }
}

/// The integer an IntOrString stands for when checking zero-ness (percent strings as their number).
fn int_or_percent_value(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.strip_suffix('%').and_then(|n| n.parse().ok()),
        _ => Some(0),
    }
}

fn validate_positive_int_or_percent(v: &Value, path: &Path, errs: &mut Errors) {
    match v {
        Value::String(s) => {
            let ok = s
                .strip_suffix('%')
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            if !ok {
                errs.push(FieldError::invalid(
                    path,
                    s.as_str(),
                    &meta::regex_error(
                        "a valid percent string must be a numeric string followed by an ending '%'",
                        "[0-9]+%",
                        &["1%", "93%"],
                    ),
                ));
            }
        }
        Value::Number(n) if n.as_i64().is_some_and(|n| n < 0) => {
            errs.push(FieldError::invalid(
                path,
                v.clone(),
                meta::IS_NEGATIVE_ERROR_MSG,
            ));
        }
        _ => {}
    }
}

fn validate_rolling_update(ru: &Value, path: &Path, errs: &mut Errors) {
    let max_unavailable = obj_or_null(ru, "maxUnavailable");
    let max_surge = obj_or_null(ru, "maxSurge");
    let mu_path = path.child("maxUnavailable");
    validate_positive_int_or_percent(max_unavailable, &mu_path, errs);
    validate_positive_int_or_percent(max_surge, &path.child("maxSurge"), errs);
    if int_or_percent_value(max_unavailable) == Some(0)
        && int_or_percent_value(max_surge) == Some(0)
    {
        errs.push(FieldError::invalid(
            &mu_path,
            max_unavailable.clone(),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
    if max_unavailable.is_string() && int_or_percent_value(max_unavailable).is_some_and(|p| p > 100)
    {
        errs.push(FieldError::invalid(
            &mu_path,
            max_unavailable.clone(),
            "must not be greater than 100%",
        ));
    }
}

pub(crate) fn validate_replica_set(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = obj_or_null(obj, "spec");
    let spath = Path::new("spec");
    nonnegative(spec, "replicas", &spath, errs);
    nonnegative(spec, "minReadySeconds", &spath, errs);
    // Upstream's ReplicaSet message really says "deployment".
    if let Some(sel) = validate_required_selector(spec, &spath, "deployment", errs) {
        let tpath = spath.child("template");
        validate_template_for_replica_set(obj_or_null(spec, "template"), &sel, &tpath, errs);
    }
    if let Some(old) = old {
        immutable(spec, obj_or_null(old, "spec"), "selector", &spath, errs);
    }
}

pub(crate) fn validate_stateful_set(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = obj_or_null(obj, "spec");
    let spath = Path::new("spec");
    match str_of(spec, "podManagementPolicy") {
        "" => errs.push(FieldError::required(
            &spath.child("podManagementPolicy"),
            "",
        )),
        "OrderedReady" | "Parallel" => {}
        other => errs.push(FieldError::invalid(
            &spath.child("podManagementPolicy"),
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let strategy = obj_or_null(spec, "updateStrategy");
    let strategy_path = spath.child("updateStrategy");
    let rolling = obj_or_null(strategy, "rollingUpdate");
    match str_of(strategy, "type") {
        "" => errs.push(FieldError::required(&strategy_path, "")),
        "OnDelete" => {
            if !rolling.is_null() {
                errs.push(FieldError::invalid(
                    &strategy_path.child("rollingUpdate"),
                    rolling.clone(),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            nonnegative(
                rolling,
                "partition",
                &strategy_path.child("rollingUpdate"),
                errs,
            );
        }
        _ => errs.push(FieldError::invalid(
            &strategy_path,
            strategy.clone(),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    nonnegative(spec, "revisionHistoryLimit", &spath, errs);
    nonnegative(spec, "replicas", &spath, errs);
    nonnegative(spec, "minReadySeconds", &spath, errs);
    let template = obj_or_null(spec, "template");
    let tpath = spath.child("template");
    if let Some(sel) = validate_required_selector(spec, &spath, "statefulset", errs) {
        if !sel.is_empty() {
            check_selector_matches(&sel, template, &tpath, errs);
        }
        let with_claims = with_claim_template_volumes(template, spec);
        pod::validate_pod_template_spec(&with_claims, &tpath, errs);
    }
    require_restart_always(template, &tpath, errs);
    if template
        .pointer("/spec/activeDeadlineSeconds")
        .is_some_and(|v| !v.is_null())
    {
        errs.push(FieldError::forbidden(
            &tpath.child("spec").child("activeDeadlineSeconds"),
            "activeDeadlineSeconds in StatefulSet is not Supported",
        ));
    }
    if let Some(old) = old {
        let old_spec = obj_or_null(old, "spec");
        let mut munged = spec.clone();
        if let Some(m) = munged.as_object_mut() {
            for key in [
                "replicas",
                "template",
                "updateStrategy",
                "minReadySeconds",
                "ordinals",
                "revisionHistoryLimit",
                "persistentVolumeClaimRetentionPolicy",
            ] {
                match old_spec.get(key) {
                    Some(v) => m.insert(key.to_owned(), v.clone()),
                    None => m.remove(key),
                };
            }
        }
        if &munged != old_spec {
            errs.push(FieldError::forbidden(
                &spath,
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }
}

pub(crate) fn validate_daemon_set(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = obj_or_null(obj, "spec");
    let spath = Path::new("spec");
    let sel = obj_or_null(spec, "selector");
    validate_label_selector(sel, &spath.child("selector"), errs);
    let template = obj_or_null(spec, "template");
    let tpath = spath.child("template");
    if let Ok(s) = Selector::parse(sel) {
        check_selector_matches(&s, template, &tpath, errs);
    }
    if is_empty_selector(sel) {
        errs.push(FieldError::invalid(
            &spath.child("selector"),
            sel.clone(),
            "empty selector is invalid for daemonset",
        ));
    }
    pod::validate_pod_template_spec(template, &tpath, errs);
    require_restart_always(template, &tpath, errs);
    if template
        .pointer("/spec/activeDeadlineSeconds")
        .is_some_and(|v| !v.is_null())
    {
        errs.push(FieldError::forbidden(
            &tpath.child("spec").child("activeDeadlineSeconds"),
            "activeDeadlineSeconds in DaemonSet is not Supported",
        ));
    }
    nonnegative(spec, "minReadySeconds", &spath, errs);
    let strategy = obj_or_null(spec, "updateStrategy");
    let strategy_path = spath.child("updateStrategy");
    match str_of(strategy, "type") {
        "OnDelete" => {}
        "RollingUpdate" => {
            let ru = obj_or_null(strategy, "rollingUpdate");
            if ru.is_null() {
                errs.push(FieldError::required(
                    &strategy_path.child("rollingUpdate"),
                    "",
                ));
            } else {
                validate_rolling_update(ru, &strategy_path.child("rollingUpdate"), errs);
            }
        }
        other => errs.push(FieldError::not_supported(
            &strategy_path.child("type"),
            other,
            &["OnDelete", "RollingUpdate"],
        )),
    }
    nonnegative(spec, "revisionHistoryLimit", &spath, errs);
    if let Some(old) = old {
        immutable(spec, obj_or_null(old, "spec"), "selector", &spath, errs);
    }
}

/// `validateJobSpec`, shared by Jobs and CronJob job templates.
fn validate_job_spec_common(spec: &Value, spath: &Path, errs: &mut Errors) {
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        nonnegative(spec, key, spath, errs);
    }
    match str_of(spec, "completionMode") {
        "" | "NonIndexed" | "Indexed" => {}
        other => errs.push(FieldError::not_supported(
            &spath.child("completionMode"),
            other,
            &["NonIndexed", "Indexed"],
        )),
    }
    if str_of(spec, "completionMode") == "Indexed"
        && spec.get("completions").is_none_or(Value::is_null)
    {
        errs.push(FieldError::required(
            &spath.child("completions"),
            "when completion mode is Indexed",
        ));
    }
    let tpath = spath.child("template");
    let template = obj_or_null(spec, "template");
    pod::validate_pod_template_spec(template, &tpath, errs);
    let policy = template
        .pointer("/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if policy != "OnFailure" && policy != "Never" {
        errs.push(FieldError::not_supported(
            &tpath.child("spec").child("restartPolicy"),
            policy,
            &["OnFailure", "Never"],
        ));
    }
}

pub(crate) fn validate_job(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = obj_or_null(obj, "spec");
    let spath = Path::new("spec");
    validate_job_spec_common(spec, &spath, errs);
    let sel = obj_or_null(spec, "selector");
    if sel.is_null() {
        errs.push(FieldError::required(&spath.child("selector"), ""));
    } else {
        validate_label_selector(sel, &spath.child("selector"), errs);
    }
    if let Ok(s) = Selector::parse(sel) {
        check_selector_matches(
            &s,
            obj_or_null(spec, "template"),
            &spath.child("template"),
            errs,
        );
    }
    if let Some(old) = old {
        let old_spec = obj_or_null(old, "spec");
        for key in [
            "completions",
            "selector",
            "completionMode",
            "podFailurePolicy",
            "backoffLimitPerIndex",
        ] {
            immutable(spec, old_spec, key, &spath, errs);
        }
        // A suspended Job that never started may have its template's scheduling directives
        // changed; otherwise the template is frozen.
        let suspended = old_spec.get("suspend").and_then(Value::as_bool) == Some(true);
        if !suspended {
            immutable(spec, old_spec, "template", &spath, errs);
        }
    }
}

pub(crate) fn validate_cron_job(obj: &Value, errs: &mut Errors) {
    let spec = obj_or_null(obj, "spec");
    let spath = Path::new("spec");
    let schedule = str_of(spec, "schedule");
    if schedule.is_empty() {
        errs.push(FieldError::required(&spath.child("schedule"), ""));
    } else if let Err(msg) = check_cron_schedule(schedule) {
        errs.push(FieldError::invalid(
            &spath.child("schedule"),
            schedule,
            &msg,
        ));
    }
    nonnegative(spec, "startingDeadlineSeconds", &spath, errs);
    match str_of(spec, "concurrencyPolicy") {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(FieldError::required(&spath.child("concurrencyPolicy"), "")),
        other => errs.push(FieldError::not_supported(
            &spath.child("concurrencyPolicy"),
            other,
            &["Allow", "Forbid", "Replace"],
        )),
    }
    nonnegative(spec, "successfulJobsHistoryLimit", &spath, errs);
    nonnegative(spec, "failedJobsHistoryLimit", &spath, errs);
    let jt_path = spath.child("jobTemplate");
    let job_template = obj_or_null(spec, "jobTemplate");
    let jt_meta = obj_or_null(job_template, "metadata");
    meta::validate_labels(
        jt_meta.get("labels"),
        &jt_path.child("metadata").child("labels"),
        errs,
    );
    let job_spec = obj_or_null(job_template, "spec");
    let js_path = jt_path.child("spec");
    validate_job_spec_common(job_spec, &js_path, errs);
    let sel = obj_or_null(job_spec, "selector");
    if !sel.is_null() {
        errs.push(FieldError::invalid(
            &js_path.child("selector"),
            sel.clone(),
            "`selector` will be auto-generated",
        ));
    }
    if job_spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        errs.push(FieldError::not_supported(
            &js_path.child("manualSelector"),
            true,
            &["nil", "false"],
        ));
    }
}

/// Checks a standard 5-field cron schedule (or an `@` descriptor) like robfig/cron's parser.
fn check_cron_schedule(schedule: &str) -> Result<(), String> {
    if schedule.starts_with("TZ=") || schedule.starts_with("CRON_TZ=") {
        return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
    }
    if let Some(desc) = schedule.strip_prefix('@') {
        return match desc {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            _ if desc.starts_with("every ") => Ok(()),
            _ => Err(format!("unrecognized descriptor: {schedule}")),
        };
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: {schedule}",
            fields.len()
        ));
    }
    const BOUNDS: [(i64, i64); 5] = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)];
    const NAMES: [&[&str]; 5] = [
        &[],
        &[],
        &[],
        &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
        &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    ];
    for (field, ((min, max), names)) in fields.iter().zip(BOUNDS.iter().zip(NAMES)) {
        for part in field.split(',') {
            check_cron_range(part, *min, *max, names)?;
        }
    }
    Ok(())
}

fn check_cron_range(expr: &str, min: i64, max: i64, names: &[&str]) -> Result<(), String> {
    let (range, step) = match expr.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (expr, None),
    };
    let value = |s: &str| -> Result<i64, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            let base = if min == 1 { 1 } else { 0 };
            return Ok(i64::try_from(i).unwrap_or(0) + base);
        }
        s.parse::<i64>().map_err(|_| {
            format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax")
        })
    };
    let (lo, hi) = if range == "*" || range == "?" {
        (min, max)
    } else if let Some((a, b)) = range.split_once('-') {
        (value(a)?, value(b)?)
    } else {
        let v = value(range)?;
        (v, v)
    };
    if lo < min {
        return Err(format!(
            "beginning of range ({lo}) below minimum ({min}): {expr}"
        ));
    }
    if hi > max {
        return Err(format!("end of range ({hi}) above maximum ({max}): {expr}"));
    }
    if lo > hi {
        return Err(format!(
            "beginning of range ({lo}) beyond end of range ({hi}): {expr}"
        ));
    }
    if let Some(step) = step {
        let s = value(step)?;
        if s <= 0 {
            return Err(format!("step of range should be a positive number: {expr}"));
        }
    }
    Ok(())
}

/// The template as the StatefulSet controller will run it: each `volumeClaimTemplates` entry is
/// a volume of the pod, so containers may mount a claim template by name (upstream accepts it).
fn with_claim_template_volumes(template: &Value, spec: &Value) -> Value {
    let claims: Vec<&str> = spec
        .get("volumeClaimTemplates")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.pointer("/metadata/name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let mut t = template.clone();
    if claims.is_empty() {
        return t;
    }
    let Some(pod_spec) = t.get_mut("spec").and_then(Value::as_object_mut) else {
        return t;
    };
    let volumes = pod_spec
        .entry("volumes")
        .or_insert_with(|| Value::Array(Vec::new()));
    if volumes.is_null() {
        *volumes = Value::Array(Vec::new());
    }
    if let Some(list) = volumes.as_array_mut() {
        for name in claims {
            let present = list
                .iter()
                .any(|v| v.get("name").and_then(Value::as_str) == Some(name));
            if !present {
                list.push(serde_json::json!({
                    "name": name,
                    "persistentVolumeClaim": {"claimName": name},
                }));
            }
        }
    }
    t
}
