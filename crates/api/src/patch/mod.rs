//! The three PATCH body types the API server accepts, applied to the JSON form of an object:
//! RFC 6902 JSON Patch, RFC 7386 JSON Merge Patch and Kubernetes strategic merge patch.
//!
//! Each function takes the live object and the patch body and returns the patched object; the
//! caller re-applies defaults and validation afterwards, as upstream does.

mod schema;
mod strategic;

use serde_json::Value;

/// Result of a patch operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a patch could not be applied. `Display` is upstream's message text; [`Error::field`]
/// names the field (dotted JSON path) where strategic merge failed, for `Status` causes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The patch (or live object) is not the JSON shape the patch type needs: upstream
    /// `invalid JSON document` (strategic merge) or `Invalid JSON Patch` (merge patch).
    #[error("{message}")]
    InvalidDocument {
        /// Upstream's message.
        message: &'static str,
    },
    /// A JSON Patch body that does not decode into a list of operations.
    #[error("{message}")]
    InvalidJsonPatch {
        /// The decoder's message.
        message: String,
    },
    /// A JSON Patch operation failed: a `test` did not match or a path does not exist.
    #[error("{message}")]
    JsonPatchFailed {
        /// Which operation failed, and why, in evanphx/json-patch wording.
        message: String,
    },
    /// A malformed `$deleteFromPrimitiveList`, `$retainKeys` or `$setElementOrder` directive.
    #[error("{message}")]
    BadPatchFormat {
        /// Where the directive sits.
        field: String,
        /// Upstream's message, e.g. `invalid patch format of retainKeys`.
        message: &'static str,
    },
    /// A list whose elements are lists.
    #[error("lists of lists are not supported")]
    ListOfLists {
        /// The list field.
        field: String,
    },
    /// A list mixing element types, e.g. `$patch: delete` inside a list of strings.
    #[error("{message}")]
    MixedListElements {
        /// The list field.
        field: String,
        /// `list element types are not identical: …`.
        message: String,
    },
    /// An element of a merge list lacks the merge key.
    #[error("{message}")]
    MissingMergeKey {
        /// The list field.
        field: String,
        /// `map: map[…] does not contain declared merge key: <key>`.
        message: String,
    },
    /// A `$patch` value other than `replace`, `delete` (and `merge` nowhere).
    #[error("{message}")]
    UnknownDirective {
        /// Where the directive sits.
        field: String,
        /// `unknown patch type: <value> in map: map[…]`.
        message: String,
    },
    /// `$patch: merge` as a list element.
    #[error("merging lists cannot yet be specified in the patch")]
    MergingListsUnsupported {
        /// The list field.
        field: String,
    },
    /// A patch list whose order contradicts its `$setElementOrder` list.
    #[error("{message}")]
    OrderMismatch {
        /// The list field.
        field: String,
        /// `The order in patch list: … doesn't match $setElementOrder list: …`.
        message: String,
    },
}

impl Error {
    /// The field (dotted JSON path, list elements as `[index]`) a strategic merge error is about.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::InvalidDocument { .. }
            | Error::InvalidJsonPatch { .. }
            | Error::JsonPatchFailed { .. } => None,
            Error::BadPatchFormat { field, .. }
            | Error::ListOfLists { field }
            | Error::MixedListElements { field, .. }
            | Error::MissingMergeKey { field, .. }
            | Error::UnknownDirective { field, .. }
            | Error::MergingListsUnsupported { field }
            | Error::OrderMismatch { field, .. } => Some(field),
        }
    }

    /// HTTP status the API server answers with: 400 `BadRequest` for undecodable bodies and
    /// malformed directives, 422 `Invalid` for patches that cannot be applied. Upstream sends
    /// 500 with an empty reason for several strategic merge errors; a client's malformed
    /// patch is not a server fault, so those are 422 here.
    pub fn status_code(&self) -> u16 {
        match self {
            Error::InvalidDocument { .. }
            | Error::InvalidJsonPatch { .. }
            | Error::BadPatchFormat { .. } => 400,
            Error::JsonPatchFailed { .. }
            | Error::ListOfLists { .. }
            | Error::MixedListElements { .. }
            | Error::MissingMergeKey { .. }
            | Error::UnknownDirective { .. }
            | Error::MergingListsUnsupported { .. }
            | Error::OrderMismatch { .. } => 422,
        }
    }
}

/// Applies an RFC 6902 JSON Patch (`application/json-patch+json`). Operations apply in order;
/// any failure (a `test` mismatch, a missing path) leaves nothing applied.
pub fn json_patch(original: &Value, patch: &Value) -> Result<Value> {
    let operations: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| Error::InvalidJsonPatch {
            message: e.to_string(),
        })?;
    let mut document = original.clone();
    json_patch::patch(&mut document, &operations).map_err(|e| Error::JsonPatchFailed {
        message: describe_json_patch_error(&operations, &e),
    })?;
    Ok(document)
}

/// Words a JSON Patch failure the way the Go library upstream uses does (clients grep these).
fn describe_json_patch_error(
    operations: &json_patch::Patch,
    error: &json_patch::PatchError,
) -> String {
    use json_patch::{PatchErrorKind, PatchOperation};
    let path = error.path.to_string();
    let operation = operations.0.get(error.operation);
    match (operation, &error.kind) {
        (_, PatchErrorKind::TestFailed) => format!("testing value {path} failed: test failed"),
        (Some(PatchOperation::Test(_)), _) => {
            format!("test operation does not apply: is missing path: {path}: missing value")
        }
        (Some(PatchOperation::Add(_)), _) => {
            format!("add operation does not apply: doc is missing path: \"{path}\": missing value")
        }
        (Some(PatchOperation::Remove(_)), _) => {
            format!(
                "remove operation does not apply: doc is missing path: \"{path}\": missing value"
            )
        }
        (Some(PatchOperation::Replace(_)), _) => {
            format!("replace operation does not apply: doc is missing path: {path}: missing value")
        }
        (Some(PatchOperation::Move(op)), PatchErrorKind::CannotMoveInsideItself) => {
            format!(
                "move operation does not apply: cannot move {} into its own child {path}",
                op.from
            )
        }
        (Some(PatchOperation::Move(op)), PatchErrorKind::InvalidFromPointer) => {
            format!(
                "move operation does not apply: doc is missing from path: {}: missing value",
                op.from
            )
        }
        (Some(PatchOperation::Copy(op)), PatchErrorKind::InvalidFromPointer) => {
            format!(
                "copy operation does not apply: doc is missing from path: {}: missing value",
                op.from
            )
        }
        (Some(PatchOperation::Move(_)), _) => {
            format!(
                "move operation does not apply: doc is missing destination path: {path}: missing value"
            )
        }
        (Some(PatchOperation::Copy(_)), _) => {
            format!(
                "copy operation does not apply: doc is missing destination path: {path}: missing value"
            )
        }
        (None, kind) => format!(
            "operation {} failed at path {path}: {kind}",
            error.operation
        ),
    }
}

/// Applies an RFC 7386 JSON Merge Patch (`application/merge-patch+json`): maps merge
/// recursively, `null` deletes a key, every other value (lists included) replaces.
pub fn merge_patch(original: &Value, patch: &Value) -> Result<Value> {
    if !patch.is_object() {
        return Err(Error::InvalidDocument {
            message: "Invalid JSON Patch",
        });
    }
    let mut document = original.clone();
    json_patch::merge(&mut document, patch);
    Ok(document)
}

/// Whether `group`/`kind` is a built-in kind that accepts strategic merge patch. Upstream
/// answers 415 `UnsupportedMediaType` for strategic merge on custom resources.
pub fn supports_strategic_merge(group: &str, kind: &str) -> bool {
    schema::root_type(group, kind).is_some()
}

/// Applies a Kubernetes strategic merge patch (`application/strategic-merge-patch+json`) to an
/// object of the built-in kind `group`/`kind` (group `""` for core), with the list merge keys,
/// patch strategies and `$patch`, `$retainKeys`, `$setElementOrder/…`,
/// `$deleteFromPrimitiveList/…` directives of upstream. Kinds without a compiled-in schema are
/// patched with JSON merge patch semantics; see [`supports_strategic_merge`].
pub fn strategic_merge(group: &str, kind: &str, original: &Value, patch: &Value) -> Result<Value> {
    let Some(root) = schema::root_type(group, kind) else {
        return merge_patch(original, patch);
    };
    let invalid = || Error::InvalidDocument {
        message: "invalid JSON document",
    };
    let Value::Object(patch) = patch else {
        return Err(invalid());
    };
    let Value::Object(original) = original else {
        return Err(invalid());
    };
    strategic::apply(Some(root), original.clone(), patch.clone()).map(Value::Object)
}

#[cfg(test)]
mod tests;
