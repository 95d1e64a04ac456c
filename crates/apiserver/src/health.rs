//! Health checks as kube-apiserver answers them (`/healthz`, `/readyz` with an `etcd` check,
//! `?verbose` listing each check), and `/skiff/datastore`: the datastore's health and size.

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::App;

/// `/healthz`, `/readyz` and their `/etcd` sub-checks: `ok`, or 500 naming the failed check.
/// The datastore check is one linearizable read, so a dead etcd fails readiness within the
/// store's request bound.
pub async fn check(app: &App, path: &str, verbose: bool) -> Response {
    let datastore = app.objects.store().current_revision().await;
    let single = path.ends_with("/etcd");
    let (code, body) = match (&datastore, single, verbose) {
        (Ok(_), true, _) => (StatusCode::OK, "ok".to_string()),
        (Err(e), true, _) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("[-]etcd failed: {e}\n"),
        ),
        (Ok(_), false, false) => (StatusCode::OK, "ok".to_string()),
        (Ok(_), false, true) => (
            StatusCode::OK,
            format!(
                "[+]ping ok\n[+]etcd ok\n{} check passed\n",
                check_name(path)
            ),
        ),
        (Err(e), false, _) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "[+]ping ok\n[-]etcd failed: {e}\n{} check failed\n",
                check_name(path)
            ),
        ),
    };
    (code, [("content-type", "text/plain; charset=utf-8")], body).into_response()
}

fn check_name(path: &str) -> &str {
    path.trim_start_matches('/')
}

/// `/skiff/datastore`: backend, revision, compaction, size, keys and per-member state as JSON;
/// 503 with a Status when the datastore does not answer.
pub async fn datastore(app: &App) -> Response {
    match app.objects.store().status().await {
        Ok(s) => {
            let members: Vec<serde_json::Value> = s
                .members
                .iter()
                .map(|m| {
                    serde_json::json!({
                        "endpoint": m.endpoint,
                        "healthy": m.healthy,
                        "leader": m.leader,
                        "version": m.version,
                        "sizeBytes": m.size_bytes,
                        "error": m.error,
                    })
                })
                .collect();
            let body = serde_json::json!({
                "backend": s.backend,
                "revision": s.revision,
                "compactedRevision": s.compacted_revision,
                "sizeBytes": s.size_bytes,
                "keys": s.keys,
                "members": members,
            });
            (
                StatusCode::OK,
                [("content-type", "application/json")],
                body.to_string(),
            )
                .into_response()
        }
        Err(e) => crate::error::ApiError::from(e).into_response(),
    }
}
