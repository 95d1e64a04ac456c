//! API errors and their one translation into Kubernetes `Status` objects at the HTTP edge.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use skiff_api::registry::ResourceSpec;

/// A result whose error becomes a `Status` response.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// One cause of an Invalid error.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    /// Upstream cause type (`FieldValueRequired`, ...).
    pub reason: String,
    /// Message without the field prefix.
    pub message: String,
    /// Field path (`spec.containers[0].image`).
    pub field: String,
}

/// Every failure a client can see, each mapped to its HTTP code and Status reason.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// 404 for a named object: `pods "web" not found`.
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        /// Qualified resource (`deployments.apps`).
        resource: String,
        /// Group for details.
        group: String,
        /// Plural resource for details.
        kind: String,
        /// Object name.
        name: String,
    },
    /// 404 for a path the server does not serve.
    #[error("the server could not find the requested resource")]
    NoSuchPath,
    /// 409 for a create of an existing name.
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        /// Qualified resource.
        resource: String,
        /// Group for details.
        group: String,
        /// Plural resource for details.
        kind: String,
        /// Object name.
        name: String,
    },
    /// 409 for a stale resourceVersion or a failed precondition.
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {detail}")]
    Conflict {
        /// Qualified resource.
        resource: String,
        /// Group for details.
        group: String,
        /// Plural resource for details.
        kind: String,
        /// Object name.
        name: String,
        /// Why.
        detail: String,
    },
    /// 422 with field causes.
    #[error("{qualified_kind} \"{name}\" is invalid: {summary}")]
    Invalid {
        /// `Deployment.apps`.
        qualified_kind: String,
        /// Group for details.
        group: String,
        /// Kind for details.
        kind: String,
        /// Object name.
        name: String,
        /// The rendered list of causes.
        summary: String,
        /// The causes.
        causes: Vec<Cause>,
    },
    /// 400 with a free-text message.
    #[error("{0}")]
    BadRequest(String),
    /// 401.
    #[error("Unauthorized")]
    Unauthorized,
    /// 403 with a full message.
    #[error("{message}")]
    Forbidden {
        /// Message.
        message: String,
        /// Name for details.
        name: String,
        /// Group for details.
        group: String,
        /// Plural resource for details.
        kind: String,
    },
    /// 405.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// 410: a resourceVersion too old to serve.
    #[error("{0}")]
    Expired(String),
    /// 413.
    #[error("Request entity too large: limit is {0}")]
    TooLarge(usize),
    /// 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 406.
    #[error("{0}")]
    NotAcceptable(String),
    /// 504 for a resourceVersion newer than the store has.
    #[error("Timeout: Too large resource version: {requested}, current: {current}")]
    TooLargeResourceVersion {
        /// Requested revision.
        requested: i64,
        /// Current revision.
        current: i64,
    },
    /// 503: the datastore cannot answer.
    #[error("{0}")]
    Unavailable(String),
    /// 500.
    #[error("Internal error occurred: {0}")]
    Internal(String),
}

impl ApiError {
    /// 404 for `name` of `spec`.
    pub fn not_found(spec: &ResourceSpec, name: &str) -> Self {
        Self::NotFound {
            resource: spec.qualified_resource(),
            group: spec.group.to_string(),
            kind: spec.resource.to_string(),
            name: name.to_string(),
        }
    }

    /// 404 for a missing namespace.
    pub fn namespace_not_found(name: &str) -> Self {
        Self::NotFound {
            resource: "namespaces".into(),
            group: String::new(),
            kind: "namespaces".into(),
            name: name.to_string(),
        }
    }

    /// 409 AlreadyExists for `name` of `spec`.
    pub fn already_exists(spec: &ResourceSpec, name: &str) -> Self {
        Self::AlreadyExists {
            resource: spec.qualified_resource(),
            group: spec.group.to_string(),
            kind: spec.resource.to_string(),
            name: name.to_string(),
        }
    }

    /// 409 Conflict for a stale resourceVersion.
    pub fn conflict(spec: &ResourceSpec, name: &str) -> Self {
        Self::conflict_with(
            spec,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 Conflict with a specific reason.
    pub fn conflict_with(spec: &ResourceSpec, name: &str, detail: &str) -> Self {
        Self::Conflict {
            resource: spec.qualified_resource(),
            group: spec.group.to_string(),
            kind: spec.resource.to_string(),
            name: name.to_string(),
            detail: detail.to_string(),
        }
    }

    /// 422 Invalid from field causes.
    pub fn invalid(spec: &ResourceSpec, name: &str, causes: Vec<Cause>) -> Self {
        let mut rendered: Vec<String> = Vec::new();
        for c in &causes {
            let line = if c.field.is_empty() {
                c.message.clone()
            } else {
                format!("{}: {}", c.field, c.message)
            };
            if !rendered.contains(&line) {
                rendered.push(line);
            }
        }
        let summary = if rendered.len() == 1 {
            rendered.remove(0)
        } else {
            format!("[{}]", rendered.join(", "))
        };
        Self::Invalid {
            qualified_kind: spec.qualified_kind(),
            group: spec.group.to_string(),
            kind: spec.kind.to_string(),
            name: name.to_string(),
            summary,
            causes,
        }
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    /// The HTTP status code.
    pub fn code(&self) -> StatusCode {
        match self {
            Self::NotFound { .. } | Self::NoSuchPath => StatusCode::NOT_FOUND,
            Self::AlreadyExists { .. } | Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Expired(_) => StatusCode::GONE,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            Self::TooLargeResourceVersion { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The Status `reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound { .. } | Self::NoSuchPath => "NotFound",
            Self::AlreadyExists { .. } => "AlreadyExists",
            Self::Conflict { .. } => "Conflict",
            Self::Invalid { .. } => "Invalid",
            Self::BadRequest(_) => "BadRequest",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden { .. } => "Forbidden",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::Expired(_) => "Expired",
            Self::TooLarge(_) => "RequestEntityTooLarge",
            Self::UnsupportedMediaType(_) => "UnsupportedMediaType",
            Self::NotAcceptable(_) => "NotAcceptable",
            Self::TooLargeResourceVersion { .. } => "Timeout",
            Self::Unavailable(_) => "ServiceUnavailable",
            Self::Internal(_) => "InternalError",
        }
    }

    fn details(&self) -> Option<Value> {
        fn named(name: &str, group: &str, kind: &str) -> Value {
            let mut d = serde_json::Map::new();
            d.insert("name".into(), json!(name));
            if !group.is_empty() {
                d.insert("group".into(), json!(group));
            }
            d.insert("kind".into(), json!(kind));
            Value::Object(d)
        }
        match self {
            Self::NotFound {
                name, group, kind, ..
            }
            | Self::AlreadyExists {
                name, group, kind, ..
            }
            | Self::Conflict {
                name, group, kind, ..
            } => Some(named(name, group, kind)),
            Self::Forbidden {
                name, group, kind, ..
            } => Some(named(name, group, kind)),
            Self::Invalid {
                name,
                group,
                kind,
                causes,
                ..
            } => {
                let mut d = named(name, group, kind);
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect();
                d["causes"] = Value::Array(causes);
                Some(d)
            }
            Self::TooLargeResourceVersion { .. } => Some(json!({
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1
            })),
            Self::Internal(msg) => Some(json!({"causes": [{"message": msg}]})),
            Self::NoSuchPath | Self::MethodNotAllowed => Some(json!({})),
            Self::BadRequest(_)
            | Self::Unauthorized
            | Self::Expired(_)
            | Self::TooLarge(_)
            | Self::UnsupportedMediaType(_)
            | Self::NotAcceptable(_)
            | Self::Unavailable(_) => None,
        }
    }

    /// The `Status` object for this error.
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
        });
        if let Some(d) = self.details() {
            s["details"] = d;
        }
        s["code"] = json!(self.code().as_u16());
        s
    }
}

impl From<skiff_store::Error> for ApiError {
    fn from(err: skiff_store::Error) -> Self {
        use skiff_store::Error as E;
        let err_text = err.to_string();
        match err {
            E::Compacted {
                requested,
                compacted,
            } => Self::Expired(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            E::FutureRevision { requested, current } => {
                Self::TooLargeResourceVersion { requested, current }
            }
            E::Closed => Self::Unavailable("the datastore is shutting down".into()),
            E::Storage(e) => Self::Internal(format!("datastore: {e}")),
            E::Unavailable { detail } => {
                Self::Unavailable(format!("the datastore is unavailable: {detail}"))
            }
            E::Backend { detail } => Self::Internal(format!("datastore: {detail}")),
            // The object layer checks these before they can reach a client; seeing one here means
            // a race it lost, which the client should retry.
            E::AlreadyExists { key } | E::NotFound { key } | E::Conflict { key, .. } => {
                Self::Internal(format!("unexpected store race on {key}, please retry"))
            }
            E::EmptyKey => Self::Internal("empty storage key".into()),
            E::Corrupt { .. } => Self::Internal(format!("datastore: {err_text}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        let body = self.status().to_string();
        (code, [("content-type", "application/json")], body).into_response()
    }
}
