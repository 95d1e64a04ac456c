//! Validation of RBAC, StorageClass and PriorityClass objects.

use serde_json::Value;

use super::{Errors, FieldError, Path, items, meta, obj_or_null, str_of};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;
const SYSTEM_PRIORITY_CLASSES: [(&str, i64); 2] = [
    ("system-cluster-critical", 2_000_000_000),
    ("system-node-critical", 2_000_001_000),
];

/// Role and ClusterRole rules (`ValidatePolicyRule`).
pub(crate) fn validate_role(obj: &Value, errs: &mut Errors) {
    let namespaced = str_of(obj, "kind") == "Role";
    let path = Path::new("rules");
    for (i, rule) in items(obj, "rules").iter().enumerate() {
        let p = path.index(i);
        if items(rule, "verbs").is_empty() {
            errs.push(FieldError::required(
                &p.child("verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = items(rule, "nonResourceURLs");
        if !urls.is_empty() {
            if namespaced {
                errs.push(FieldError::invalid(
                    &p.child("nonResourceURLs"),
                    Value::Array(urls.to_vec()),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            let has_resources = ["apiGroups", "resources", "resourceNames"]
                .iter()
                .any(|k| !items(rule, k).is_empty());
            if has_resources {
                errs.push(FieldError::invalid(
                    &p.child("nonResourceURLs"),
                    Value::Array(urls.to_vec()),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if items(rule, "apiGroups").is_empty() {
            errs.push(FieldError::required(
                &p.child("apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if items(rule, "resources").is_empty() {
            errs.push(FieldError::required(
                &p.child("resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
}

/// RoleBinding and ClusterRoleBinding: roleRef, subjects, and roleRef immutability.
pub(crate) fn validate_role_binding(
    obj: &Value,
    old: Option<&Value>,
    namespaced: bool,
    errs: &mut Errors,
) {
    let role_ref = obj_or_null(obj, "roleRef");
    let rpath = Path::new("roleRef");
    let api_group = str_of(role_ref, "apiGroup");
    if api_group != RBAC_GROUP {
        errs.push(FieldError::not_supported(
            &rpath.child("apiGroup"),
            api_group,
            &[RBAC_GROUP],
        ));
    }
    let kind = str_of(role_ref, "kind");
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&kind) {
        errs.push(FieldError::not_supported(&rpath.child("kind"), kind, kinds));
    }
    let name = str_of(role_ref, "name");
    if name.is_empty() {
        errs.push(FieldError::required(&rpath.child("name"), ""));
    } else {
        for m in meta::name_errors(meta::NameRule::PathSegment, name, false) {
            errs.push(FieldError::invalid(&rpath.child("name"), name, &m));
        }
    }
    let spath = Path::new("subjects");
    for (i, subject) in items(obj, "subjects").iter().enumerate() {
        validate_subject(subject, namespaced, &spath.index(i), errs);
    }
    if let Some(old) = old
        && obj_or_null(old, "roleRef") != role_ref
    {
        errs.push(FieldError::invalid(
            &rpath,
            role_ref.clone(),
            "cannot change roleRef",
        ));
    }
}

fn validate_subject(subject: &Value, namespaced: bool, path: &Path, errs: &mut Errors) {
    let name = str_of(subject, "name");
    if name.is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    }
    let api_group = str_of(subject, "apiGroup");
    match str_of(subject, "kind") {
        "ServiceAccount" => {
            if !name.is_empty() {
                for m in meta::is_dns1123_subdomain(name) {
                    errs.push(FieldError::invalid(&path.child("name"), name, &m));
                }
            }
            if !api_group.is_empty() {
                errs.push(FieldError::not_supported(
                    &path.child("apiGroup"),
                    api_group,
                    &[""],
                ));
            }
            if !namespaced && str_of(subject, "namespace").is_empty() {
                errs.push(FieldError::required(&path.child("namespace"), ""));
            }
        }
        "User" | "Group" => {
            if api_group != RBAC_GROUP {
                errs.push(FieldError::not_supported(
                    &path.child("apiGroup"),
                    api_group,
                    &[RBAC_GROUP],
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            &path.child("kind"),
            other,
            &["ServiceAccount", "User", "Group"],
        )),
    }
}

pub(crate) fn validate_storage_class(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    let provisioner = str_of(obj, "provisioner");
    let ppath = Path::new("provisioner");
    if provisioner.is_empty() {
        errs.push(FieldError::required(&ppath, ""));
    } else {
        for m in meta::is_qualified_name(&provisioner.to_lowercase()) {
            errs.push(FieldError::invalid(&ppath, provisioner, &m));
        }
    }
    let reclaim = str_of(obj, "reclaimPolicy");
    if !["Delete", "Retain"].contains(&reclaim) {
        errs.push(FieldError::not_supported(
            &Path::new("reclaimPolicy"),
            reclaim,
            &["Delete", "Retain"],
        ));
    }
    match obj.get("volumeBindingMode") {
        None | Some(Value::Null) => {
            errs.push(FieldError::required(&Path::new("volumeBindingMode"), ""));
        }
        Some(v) => {
            let mode = v.as_str().unwrap_or_default();
            if !["Immediate", "WaitForFirstConsumer"].contains(&mode) {
                errs.push(FieldError::not_supported(
                    &Path::new("volumeBindingMode"),
                    mode,
                    &["Immediate", "WaitForFirstConsumer"],
                ));
            }
        }
    }
    if let Some(old) = old {
        for (key, msg) in [
            ("parameters", "updates to parameters are forbidden."),
            ("provisioner", "updates to provisioner are forbidden."),
            ("reclaimPolicy", "updates to reclaimPolicy are forbidden."),
        ] {
            if obj_or_null(obj, key) != obj_or_null(old, key) {
                errs.push(FieldError::forbidden(&Path::new(key), msg));
            }
        }
        if obj_or_null(obj, "volumeBindingMode") != obj_or_null(old, "volumeBindingMode") {
            errs.push(FieldError::invalid(
                &Path::new("volumeBindingMode"),
                obj_or_null(obj, "volumeBindingMode").clone(),
                meta::FIELD_IMMUTABLE_ERROR_MSG,
            ));
        }
    }
}

pub(crate) fn validate_priority_class(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let value = obj.get("value").and_then(Value::as_i64).unwrap_or(0);
    if name.starts_with("system-") {
        let problem = match SYSTEM_PRIORITY_CLASSES.iter().find(|(n, _)| *n == name) {
            None => Some(format!("{name} is not a known system priority class")),
            Some((_, v)) if *v != value => {
                Some(format!("value of {name} PriorityClass must be {v}"))
            }
            Some(_) => None,
        };
        if let Some(err) = problem {
            errs.push(FieldError::forbidden(
                &Path::new("metadata").child("name"),
                &format!(
                    "priority class names with 'system-' prefix are reserved for system use only. error: {err}"
                ),
            ));
        }
    } else if value > HIGHEST_USER_DEFINABLE_PRIORITY {
        errs.push(FieldError::forbidden(
            &Path::new("value"),
            &format!(
                "maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"
            ),
        ));
    }
    let policy = str_of(obj, "preemptionPolicy");
    if !policy.is_empty() && !["Never", "PreemptLowerPriority"].contains(&policy) {
        errs.push(FieldError::not_supported(
            &Path::new("preemptionPolicy"),
            policy,
            &["PreemptLowerPriority", "Never"],
        ));
    }
    if let Some(old) = old {
        if obj_or_null(obj, "value") != obj_or_null(old, "value") {
            errs.push(FieldError::forbidden(
                &Path::new("value"),
                "may not be changed in an update.",
            ));
        }
        let new_policy = obj_or_null(obj, "preemptionPolicy");
        if new_policy != obj_or_null(old, "preemptionPolicy") {
            errs.push(FieldError::invalid(
                &Path::new("preemptionPolicy"),
                new_policy.clone(),
                meta::FIELD_IMMUTABLE_ERROR_MSG,
            ));
        }
    }
}
