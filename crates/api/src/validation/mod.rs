//! Admission validation of built-in kinds on create and update, reporting upstream's field errors
//! (`FieldValueRequired` … with kube-apiserver's exact message text) for 422 `Invalid` responses.
//!
//! Objects are `serde_json::Value`s that have already been defaulted (see [`crate::defaults`]).
//! Server-side concerns are not checked here: namespace presence by scope, resourceVersion
//! preconditions, ClusterIP/NodePort allocation.

mod core_kinds;
mod format;
mod meta;
mod other;
mod pod;
mod quantity;
mod selector;
mod workloads;

use serde_json::Value;

pub use format::go_quote;
pub use meta::is_dns1123_subdomain;

/// The kind of a field error; maps one to one onto upstream's `field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// A required value is missing (`FieldValueRequired`).
    Required,
    /// A value is malformed (`FieldValueInvalid`).
    Invalid,
    /// A value is not one of an enumeration (`FieldValueNotSupported`).
    NotSupported,
    /// A value that must be unique is repeated (`FieldValueDuplicate`).
    Duplicate,
    /// A well-formed value is not allowed here (`FieldValueForbidden`).
    Forbidden,
    /// A value is too long (`FieldValueTooLong`).
    TooLong,
    /// A list has too many items (`FieldValueTooMany`).
    TooMany,
    /// A referenced value does not exist (`FieldValueNotFound`).
    NotFound,
    /// A failure not caused by the input (`InternalError`).
    Internal,
}

/// One field-level validation error, as upstream's `field.Error`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// What is wrong.
    pub kind: FieldErrorKind,
    /// The field path, e.g. `spec.containers[0].image`.
    pub field: String,
    /// The offending value, rendered Go-style in the message; `None` omits it.
    pub value: Option<Value>,
    /// Extra explanation appended after the value.
    pub detail: String,
}

impl FieldError {
    /// The Status cause type (`details.causes[].reason`).
    pub fn reason(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::TooMany => "FieldValueTooMany",
            FieldErrorKind::NotFound => "FieldValueNotFound",
            FieldErrorKind::Internal => "InternalError",
        }
    }

    /// The message without the field prefix (the Status cause `message`), e.g. `Required value`.
    pub fn body(&self) -> String {
        let title = match self.kind {
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::TooMany => "Too many",
            FieldErrorKind::NotFound => "Not found",
            FieldErrorKind::Internal => "Internal error",
        };
        // Upstream never prints the value of these four kinds.
        let shows_value = !matches!(
            self.kind,
            FieldErrorKind::Required
                | FieldErrorKind::Forbidden
                | FieldErrorKind::TooLong
                | FieldErrorKind::Internal
        );
        let mut s = title.to_owned();
        if shows_value {
            match &self.value {
                Some(v) => {
                    s.push_str(": ");
                    s.push_str(&format::go_value(&self.field, v));
                }
                None if self.kind == FieldErrorKind::TooMany => {}
                None => s.push_str(": null"),
            }
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// The full message, `<field>: <body>`, as upstream's `Error()`.
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }

    pub(crate) fn required(path: &Path, detail: &str) -> Self {
        Self::new(FieldErrorKind::Required, path, None, detail)
    }

    pub(crate) fn invalid(path: &Path, value: impl Into<Value>, detail: &str) -> Self {
        Self::new(FieldErrorKind::Invalid, path, Some(value.into()), detail)
    }

    pub(crate) fn not_supported(path: &Path, value: impl Into<Value>, valid: &[&str]) -> Self {
        let detail = if valid.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = valid.iter().map(|v| go_quote(v)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(
            FieldErrorKind::NotSupported,
            path,
            Some(value.into()),
            &detail,
        )
    }

    pub(crate) fn duplicate(path: &Path, value: impl Into<Value>) -> Self {
        Self::new(FieldErrorKind::Duplicate, path, Some(value.into()), "")
    }

    pub(crate) fn forbidden(path: &Path, detail: &str) -> Self {
        Self::new(FieldErrorKind::Forbidden, path, None, detail)
    }

    pub(crate) fn too_long(path: &Path, max_bytes: usize) -> Self {
        let unit = if max_bytes == 1 { "byte" } else { "bytes" };
        let detail = format!("may not be more than {max_bytes} {unit}");
        Self::new(FieldErrorKind::TooLong, path, None, &detail)
    }

    pub(crate) fn not_found(path: &Path, value: impl Into<Value>) -> Self {
        Self::new(FieldErrorKind::NotFound, path, Some(value.into()), "")
    }

    fn new(kind: FieldErrorKind, path: &Path, value: Option<Value>, detail: &str) -> Self {
        Self {
            kind,
            field: path.0.clone(),
            value,
            detail: detail.to_owned(),
        }
    }
}

/// A field path under construction, rendered as upstream's `field.Path.String()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path(String);

impl Path {
    pub(crate) fn new(root: &str) -> Self {
        // A nameless root renders as an empty subscript, as upstream's `field.NewPath("")`.
        if root.is_empty() {
            Self("[]".to_owned())
        } else {
            Self(root.to_owned())
        }
    }

    pub(crate) fn child(&self, name: &str) -> Self {
        Self(format!("{}.{name}", self.0))
    }

    pub(crate) fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    pub(crate) fn key(&self, k: &str) -> Self {
        Self(format!("{}[{k}]", self.0))
    }
}

/// The accumulator every validator appends to.
pub(crate) type Errors = Vec<FieldError>;

/// Validates `obj` (of `group`/`kind`, group `""` being core) on create (`old` = `None`) or update.
///
/// Kinds without specific rules (custom resources included) get object-metadata validation only,
/// with DNS-1123 subdomain names.
pub fn validate(group: &str, kind: &str, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Errors::new();
    let rule = meta::name_rule(group, kind);
    match old {
        None => meta::validate_object_meta(obj, rule, &mut errs),
        Some(old) => meta::validate_object_meta_update(obj, old, rule, &mut errs),
    }
    match (group, kind) {
        ("", "Pod") => pod::validate_pod(obj, old, &mut errs),
        ("", "PodTemplate") => workloads::validate_pod_template(obj, &mut errs),
        ("", "ReplicationController") => workloads::validate_replication_controller(obj, &mut errs),
        ("", "Service") => core_kinds::validate_service(obj, old, &mut errs),
        ("", "ConfigMap") => core_kinds::validate_config_map(obj, old, &mut errs),
        ("", "Secret") => core_kinds::validate_secret(obj, old, &mut errs),
        ("", "PersistentVolume") => core_kinds::validate_persistent_volume(obj, &mut errs),
        ("", "PersistentVolumeClaim") => {
            core_kinds::validate_persistent_volume_claim(obj, old, &mut errs)
        }
        ("apps", "Deployment") => workloads::validate_deployment(obj, old, &mut errs),
        ("apps", "ReplicaSet") => workloads::validate_replica_set(obj, old, &mut errs),
        ("apps", "StatefulSet") => workloads::validate_stateful_set(obj, old, &mut errs),
        ("apps", "DaemonSet") => workloads::validate_daemon_set(obj, old, &mut errs),
        ("batch", "Job") => workloads::validate_job(obj, old, &mut errs),
        ("batch", "CronJob") => workloads::validate_cron_job(obj, &mut errs),
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => {
            other::validate_role(obj, &mut errs)
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            other::validate_role_binding(obj, old, kind == "RoleBinding", &mut errs)
        }
        ("storage.k8s.io", "StorageClass") => other::validate_storage_class(obj, old, &mut errs),
        ("scheduling.k8s.io", "PriorityClass") => {
            other::validate_priority_class(obj, old, &mut errs)
        }
        _ => {}
    }
    errs
}

/// The message of a 422 `Invalid` Status: `<qualified kind> "<name>" is invalid: <errors>`, where
/// one (distinct) error prints bare and several print as `[e1, e2]`, duplicates removed.
///
/// `kind` is the qualified kind, e.g. `Pod` or `Deployment.apps`.
pub fn invalid_message(kind: &str, name: &str, errors: &[FieldError]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for e in errors {
        let m = e.message();
        if !seen.contains(&m) {
            seen.push(m);
        }
    }
    let head = format!("{kind} {} is invalid", go_quote(name));
    match seen.len() {
        0 => head,
        1 => format!("{head}: {}", seen[0]),
        _ => format!("{head}: [{}]", seen.join(", ")),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared accessors and checks used by the kind validators.

pub(crate) fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

pub(crate) fn obj_or_null<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or(&Value::Null)
}

pub(crate) fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// `ValidateNonnegativeField`: `Invalid value: -1: must be greater than or equal to 0`.
pub(crate) fn nonnegative(v: &Value, key: &str, path: &Path, errs: &mut Errors) {
    if let Some(n) = v.get(key).and_then(Value::as_i64)
        && n < 0
    {
        errs.push(FieldError::invalid(
            &path.child(key),
            n,
            meta::IS_NEGATIVE_ERROR_MSG,
        ));
    }
}

/// `ValidateImmutableField`: `Invalid value: <new>: field is immutable` when old and new differ.
pub(crate) fn immutable(new: &Value, old: &Value, key: &str, path: &Path, errs: &mut Errors) {
    let n = obj_or_null(new, key);
    let o = obj_or_null(old, key);
    if n != o {
        errs.push(FieldError::invalid(
            &path.child(key),
            n.clone(),
            meta::FIELD_IMMUTABLE_ERROR_MSG,
        ));
    }
}

#[cfg(test)]
mod tests;
