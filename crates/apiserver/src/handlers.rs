//! The REST verbs on resources: get, list, watch, create, update, patch, delete,
//! deletecollection, and the subresources that are plain object views (status, scale, binding,
//! eviction, finalize). Every handler returns a `Result` whose error becomes a `Status`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use skiff_api::registry::ResourceSpec;
use skiff_api::selector::{FieldSelector, LabelSelector};
use skiff_api::table::IncludeObject;
use skiff_store::EventKind;

use crate::App;
use crate::admission;
use crate::error::{ApiError, Cause, Result};
use crate::objects::{
    self, DeleteOptions, Deleted, ListQuery, UpdateScope, WriteOptions, list_prefix, parse_rv,
};
use crate::request::{self, BodyFormat, Query, ResourcePath, Wanted};
use crate::watch_cache::CacheItem;

/// JSON response with a status code.
pub fn json_response(code: StatusCode, value: &Value) -> Response {
    (
        code,
        [("content-type", "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = skiff_api::field_validation::warning_header_value(w);
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append("warning", v);
        }
    }
    resp
}

/// Selection of a list or watch.
struct Selection {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Selection {
    fn parse(spec: &ResourceSpec, query: &Query) -> Result<Self> {
        let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        fields
            .validate(spec.group, spec.kind)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(Self { labels, fields })
    }

    fn is_everything(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    fn matches(&self, spec: &ResourceSpec, obj: &Value) -> bool {
        self.labels.matches_object(obj) && self.fields.matches(spec.group, spec.kind, obj)
    }
}

fn list_kind(spec: &ResourceSpec) -> String {
    format!("{}List", spec.kind)
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

fn include_object(query: &Query) -> Result<IncludeObject> {
    IncludeObject::parse(query.get("includeObject"))
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Dispatch a request on a resource URL.
pub async fn resource(
    app: Arc<App>,
    method: Method,
    rp: ResourcePath,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let spec = rp.spec;
    let ns = rp.namespace.as_deref();
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    let accept = headers.get("accept").and_then(|v| v.to_str().ok());
    if body.len() > request::MAX_BODY_BYTES {
        return Err(ApiError::TooLarge(request::MAX_BODY_BYTES));
    }
    if spec.namespaced && ns.is_none() && rp.name.is_some() {
        return Err(ApiError::NoSuchPath);
    }
    match (&rp.name, &rp.subresource) {
        (None, _) => match method {
            Method::GET => {
                require(spec, "list")?;
                if query.bool("watch")? {
                    watch(app, spec, ns, &query, accept).await
                } else {
                    list(&app, spec, ns, &query, accept).await
                }
            }
            Method::POST => {
                require(spec, "create")?;
                if !spec.is_stored() {
                    return review(spec, content_type, &body);
                }
                if spec.resource == "bindings" {
                    let (obj, _) = request::decode_object(content_type, &body)?;
                    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
                    return bind(&app, ns, &name, obj, &query).await;
                }
                create(&app, spec, ns, &query, content_type, &body).await
            }
            Method::DELETE => {
                require(spec, "deletecollection")?;
                delete_collection(&app, spec, ns, &query, content_type, &body).await
            }
            _ => Err(ApiError::MethodNotAllowed),
        },
        (Some(name), None) => match method {
            Method::GET => {
                require(spec, "get")?;
                let obj = app.objects.get(spec, ns, name).await?;
                respond_object(spec, StatusCode::OK, &obj, &query, accept)
            }
            Method::PUT => {
                require(spec, "update")?;
                update(
                    &app,
                    spec,
                    ns,
                    name,
                    UpdateScope::Main,
                    &query,
                    content_type,
                    &body,
                )
                .await
            }
            Method::PATCH => {
                require(spec, "patch")?;
                patch(
                    &app,
                    spec,
                    ns,
                    name,
                    UpdateScope::Main,
                    &query,
                    content_type,
                    &body,
                )
                .await
            }
            Method::DELETE => {
                require(spec, "delete")?;
                delete(&app, spec, ns, name, &query, content_type, &body).await
            }
            _ => Err(ApiError::MethodNotAllowed),
        },
        (Some(name), Some(sub)) => {
            subresource(
                app,
                spec,
                ns,
                name,
                sub,
                method,
                &query,
                content_type,
                accept,
                &body,
            )
            .await
        }
    }
}

fn require(spec: &ResourceSpec, verb: &str) -> Result<()> {
    if spec.allows(verb) {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed)
    }
}

fn respond_object(
    spec: &ResourceSpec,
    code: StatusCode,
    obj: &Value,
    query: &Query,
    accept: Option<&str>,
) -> Result<Response> {
    match request::wanted(accept)? {
        Wanted::Object => Ok(json_response(code, obj)),
        Wanted::Table => {
            let include = include_object(query)?;
            let rv = obj["metadata"]["resourceVersion"].as_str().unwrap_or("");
            let t = skiff_api::table::table(
                spec.group,
                spec.resource,
                std::slice::from_ref(obj),
                now(),
                include,
                rv,
                None,
                None,
            );
            Ok(json_response(code, &t))
        }
    }
}

fn list_query(ns: Option<&str>, query: &Query) -> Result<ListQuery> {
    let limit = query.int("limit")?.filter(|l| *l > 0).map(|l| l as usize);
    let continue_token = query
        .get("continue")
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let rv = query.get("resourceVersion").filter(|r| !r.is_empty());
    let rv_match = query.get("resourceVersionMatch").filter(|r| !r.is_empty());
    let mut q = ListQuery {
        namespace: ns.map(str::to_string),
        limit,
        continue_token,
        ..ListQuery::default()
    };
    if q.continue_token.is_some() && rv.is_some_and(|r| r != "0") {
        return Err(ApiError::bad_request(
            "specifying resource version is not allowed when using continue",
        ));
    }
    match (rv, rv_match) {
        (None, Some(m)) => {
            return Err(ApiError::bad_request(format!(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided (got {m})"
            )));
        }
        (_, Some(m)) if m != "Exact" && m != "NotOlderThan" => {
            return Err(ApiError::bad_request(format!(
                "resourceVersionMatch: Unsupported value: \"{m}\": supported values: \"Exact\", \"NotOlderThan\""
            )));
        }
        (Some("0"), Some("Exact")) => {
            return Err(ApiError::bad_request(
                "resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
            ));
        }
        (Some("0"), _) | (None, _) => {}
        (Some(r), Some("Exact")) => q.exact_revision = Some(parse_rv(r)?),
        (Some(r), _) => q.min_revision = Some(parse_rv(r)?),
    }
    Ok(q)
}

async fn list(
    app: &App,
    spec: &'static ResourceSpec,
    ns: Option<&str>,
    query: &Query,
    accept: Option<&str>,
) -> Result<Response> {
    let wanted = request::wanted(accept)?;
    let include = include_object(query)?;
    let selection = Selection::parse(spec, query)?;
    let lq = list_query(ns, query)?;
    let page = app
        .objects
        .list(spec, &lq, &|o| selection.matches(spec, o))
        .await?;
    let rv = page.revision.to_string();
    let mut meta = json!({"resourceVersion": rv});
    if let Some(c) = &page.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(r) = page.remaining {
        meta["remainingItemCount"] = json!(r);
    }
    let body = match wanted {
        Wanted::Table => skiff_api::table::table(
            spec.group,
            spec.resource,
            &page.items,
            now(),
            include,
            &rv,
            page.continue_token.as_deref(),
            page.remaining,
        ),
        Wanted::Object => json!({
            "kind": list_kind(spec),
            "apiVersion": spec.api_version(),
            "metadata": meta,
            "items": page.items,
        }),
    };
    Ok(json_response(StatusCode::OK, &body))
}

fn watch_event(kind: &str, object: Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

async fn watch(
    app: Arc<App>,
    spec: &'static ResourceSpec,
    ns: Option<&str>,
    query: &Query,
    accept: Option<&str>,
) -> Result<Response> {
    let wanted = request::wanted(accept)?;
    let include = include_object(query)?;
    let selection = Selection::parse(spec, query)?;
    let bookmarks = query.bool("allowWatchBookmarks")?;
    let timeout = query
        .int("timeoutSeconds")?
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64))
        .unwrap_or(Duration::from_secs(1800));
    let send_initial = query.bool("sendInitialEvents")?;
    let rv = query.get("resourceVersion").filter(|r| !r.is_empty());
    let prefix = list_prefix(spec, ns);

    // Initial state: rv unset or "0" start with ADDED events for every current object.
    let (initial, from) = match rv {
        None | Some("0") => {
            let lq = ListQuery {
                namespace: ns.map(str::to_string),
                ..ListQuery::default()
            };
            let page = app
                .objects
                .list(spec, &lq, &|o| selection.matches(spec, o))
                .await?;
            (page.items, page.revision)
        }
        Some(r) => {
            let rev = parse_rv(r)?;
            if send_initial {
                let lq = ListQuery {
                    namespace: ns.map(str::to_string),
                    ..ListQuery::default()
                };
                let page = app
                    .objects
                    .list(spec, &lq, &|o| selection.matches(spec, o))
                    .await?;
                (page.items, page.revision.max(rev))
            } else {
                (Vec::new(), rev)
            }
        }
    };
    // Once the request is valid, upstream starts the watch and reports a resourceVersion that is
    // too old as an ERROR event carrying the 410 Expired Status, which reflectors act on.
    let events = match app.watch.watch(&prefix, from).await {
        Ok(events) => events,
        Err(e @ ApiError::Expired(_)) => {
            futures::stream::once(futures::future::ready(Err(e))).boxed()
        }
        Err(e) => return Err(e),
    };

    let table_wanted = wanted == Wanted::Table;
    let render = move |obj: Value, first: &mut bool| -> Value {
        if table_wanted {
            let t = skiff_api::table::watch_event_table(
                spec.group,
                spec.resource,
                &obj,
                now(),
                include,
                *first,
            );
            *first = false;
            t
        } else {
            obj
        }
    };
    let shutdown = app.shutdown.clone();
    let everything = selection.is_everything();
    let stream = async_stream(move |tx| async move {
        let mut first = true;
        let mut last_rev = from;
        for obj in initial {
            if tx
                .send(Ok(watch_event("ADDED", render(obj, &mut first))))
                .await
                .is_err()
            {
                return;
            }
        }
        if send_initial && bookmarks {
            let mut b = bookmark_object(spec, last_rev);
            b["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            if tx.send(Ok(watch_event("BOOKMARK", b))).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut events = events;
        let mut last_bookmark = tokio::time::Instant::now();
        loop {
            let item = tokio::select! {
                _ = &mut deadline => return,
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
                item = events.next() => item,
            };
            let Some(item) = item else { return };
            let out = match item {
                Ok(CacheItem::Event(ev)) => {
                    last_rev = ev.revision;
                    // Without a selector no object needs decoding to tell the event's type.
                    let matches = |o: &Value| everything || selection.matches(spec, o);
                    let now_matches = ev.kind == EventKind::Put && matches(ev.object());
                    let was_matching = if everything {
                        ev.has_prev()
                    } else {
                        ev.prev().is_some_and(|p| selection.matches(spec, p))
                    };
                    let kind = match (ev.kind, was_matching, now_matches) {
                        (EventKind::Put, false, true) => "ADDED",
                        (EventKind::Put, true, true) => "MODIFIED",
                        // Left the selection: upstream reports the new state as DELETED.
                        (EventKind::Put, true, false) => "DELETED",
                        (EventKind::Delete, true, _) => "DELETED",
                        (EventKind::Delete, false, _) if !ev.has_prev() && matches(ev.object()) => {
                            "DELETED"
                        }
                        _ => continue,
                    };
                    if table_wanted {
                        watch_event(kind, render(ev.object().clone(), &mut first))
                    } else {
                        // Encoded once per event, shared by every watcher.
                        let mut line = format!("{{\"type\":\"{kind}\",\"object\":");
                        line.push_str(ev.json());
                        line.push_str("}\n");
                        Bytes::from(line)
                    }
                }
                Ok(CacheItem::Progress(rev)) => {
                    if !bookmarks
                        || rev < last_rev
                        || last_bookmark.elapsed() < Duration::from_secs(10)
                    {
                        continue;
                    }
                    last_bookmark = tokio::time::Instant::now();
                    last_rev = rev;
                    watch_event("BOOKMARK", bookmark_object(spec, rev))
                }
                Err(e) => {
                    let _ = tx.send(Ok(watch_event("ERROR", e.status()))).await;
                    return;
                }
            };
            if tx.send(Ok(out)).await.is_err() {
                return;
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert("transfer-encoding", HeaderValue::from_static("chunked"));
    Ok(resp)
}

fn bookmark_object(spec: &ResourceSpec, rev: i64) -> Value {
    json!({
        "kind": spec.kind,
        "apiVersion": spec.api_version(),
        "metadata": {"resourceVersion": rev.to_string()},
    })
}

/// A stream fed by a task through a bounded channel.
fn async_stream<F, Fut>(
    f: F,
) -> impl futures::Stream<Item = std::result::Result<Bytes, std::io::Error>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<std::result::Result<Bytes, std::io::Error>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Decode, check and admit a create/update body.
struct Admitted {
    obj: Value,
    warnings: Vec<String>,
}

fn field_validation(query: &Query) -> Result<&str> {
    match query.get("fieldValidation") {
        None | Some("") => Ok("Warn"),
        Some(v @ ("Strict" | "Warn" | "Ignore")) => Ok(v),
        Some(other) => Err(ApiError::bad_request(format!(
            "fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
        ))),
    }
}

fn check_fields(
    spec: &ResourceSpec,
    query: &Query,
    raw_json: Option<&[u8]>,
) -> Result<Vec<String>> {
    let mode = field_validation(query)?;
    let Some(raw) = raw_json else {
        return Ok(Vec::new());
    };
    if mode == "Ignore" {
        return Ok(Vec::new());
    }
    let problems = skiff_api::field_validation::unknown_and_duplicate_fields(
        spec.group,
        spec.version,
        spec.kind,
        raw,
    );
    if problems.is_empty() {
        return Ok(Vec::new());
    }
    if mode == "Strict" {
        return Err(ApiError::bad_request(
            skiff_api::field_validation::strict_error_message(spec.kind, spec.version, &problems),
        ));
    }
    Ok(problems)
}

fn decode_body(
    spec: &ResourceSpec,
    query: &Query,
    content_type: Option<&str>,
    body: &Bytes,
) -> Result<Admitted> {
    let (obj, format) = request::decode_object(content_type, body)?;
    request::check_kind(spec, &obj)?;
    let yaml_json;
    let raw: Option<&[u8]> = match format {
        BodyFormat::Json => Some(body),
        BodyFormat::Yaml => {
            yaml_json = serde_json::to_vec(&obj).ok();
            yaml_json.as_deref()
        }
        BodyFormat::Protobuf => None,
    };
    let warnings = check_fields(spec, query, raw)?;
    let mut obj = obj;
    skiff_api::field_validation::prune_unknown_fields(
        spec.group,
        spec.version,
        spec.kind,
        &mut obj,
    );
    Ok(Admitted { obj, warnings })
}

async fn create(
    app: &App,
    spec: &'static ResourceSpec,
    ns: Option<&str>,
    query: &Query,
    content_type: Option<&str>,
    body: &Bytes,
) -> Result<Response> {
    let Admitted { mut obj, warnings } = decode_body(spec, query, content_type, body)?;
    if spec.namespaced && ns.is_none() {
        return Err(ApiError::NoSuchPath);
    }
    admission::admit_create(app, spec, ns, &mut obj).await?;
    let opts = WriteOptions {
        dry_run: query.dry_run()?,
    };
    let (_, created) = app.objects.create_json(spec, ns, obj, opts).await?;
    let resp = (
        StatusCode::CREATED,
        [("content-type", "application/json")],
        created,
    )
        .into_response();
    Ok(with_warnings(resp, &warnings))
}

#[allow(clippy::too_many_arguments)]
async fn update(
    app: &App,
    spec: &'static ResourceSpec,
    ns: Option<&str>,
    name: &str,
    scope: UpdateScope,
    query: &Query,
    content_type: Option<&str>,
    body: &Bytes,
) -> Result<Response> {
    let Admitted { obj, warnings } = decode_body(spec, query, content_type, body)?;
    check_name(&obj, name, ns)?;
    let opts = WriteOptions {
        dry_run: query.dry_run()?,
    };
    let expected = match obj["metadata"]["resourceVersion"].as_str() {
        Some(rv) if !rv.is_empty() => Some(parse_rv(rv)?),
        _ => None,
    };
    let updated = app
        .objects
        .update_with(spec, ns, name, scope, opts, expected, |old| {
            // Validation sees the object with its server-owned fields carried over, as upstream's
            // BeforeUpdate prepares it.
            let mut new = app
                .objects
                .prepare_update(spec, name, old, obj.clone(), scope)?;
            admission::admit_update(spec, old, &mut new, scope)?;
            Ok(new)
        })
        .await?;
    Ok(with_warnings(
        json_response(StatusCode::OK, &updated),
        &warnings,
    ))
}

/// Upstream's `checkName` for updates: the body names the URL's object (an empty name does not),
/// and a namespace in the body is the URL's.
fn check_name(obj: &Value, name: &str, ns: Option<&str>) -> Result<()> {
    let obj_name = objects::name_of(obj);
    if obj_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({obj_name}) does not match the name on the URL ({name})"
        )));
    }
    if let Some(ns) = ns
        && let Some(obj_ns) = obj["metadata"]["namespace"]
            .as_str()
            .filter(|n| !n.is_empty())
        && obj_ns != ns
    {
        return Err(ApiError::bad_request(format!(
            "the namespace of the object ({obj_ns}) does not match the namespace on the URL ({ns})"
        )));
    }
    Ok(())
}

fn patch_error(spec: &ResourceSpec, old: &Value, e: &skiff_api::patch::Error) -> ApiError {
    if e.status_code() == 400 {
        return ApiError::bad_request(e.to_string());
    }
    ApiError::invalid(
        spec,
        old["metadata"]["name"].as_str().unwrap_or(""),
        vec![Cause {
            reason: "FieldValueInvalid".into(),
            message: e.to_string(),
            field: e.field().unwrap_or("").to_string(),
        }],
    )
}

fn apply_patch(spec: &ResourceSpec, patch_type: &str, old: &Value, patch: &Value) -> Result<Value> {
    let result = match patch_type {
        "application/json-patch+json" => skiff_api::patch::json_patch(old, patch),
        "application/merge-patch+json" => skiff_api::patch::merge_patch(old, patch),
        "application/strategic-merge-patch+json" => {
            skiff_api::patch::strategic_merge(spec.group, spec.kind, old, patch)
        }
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {other})"
            )));
        }
    };
    result.map_err(|e| patch_error(spec, old, &e))
}

#[allow(clippy::too_many_arguments)]
async fn patch(
    app: &App,
    spec: &'static ResourceSpec,
    ns: Option<&str>,
    name: &str,
    scope: UpdateScope,
    query: &Query,
    content_type: Option<&str>,
    body: &Bytes,
) -> Result<Response> {
    let patch_type = request::media_type(content_type);
    if patch_type == "application/apply-patch+yaml" || patch_type == "application/apply-patch+cbor"
    {
        return Err(ApiError::UnsupportedMediaType(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (server-side apply is not supported by this server yet; use client-side kubectl apply)".into(),
        ));
    }
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch body as JSON: {e}")))?;
    if patch_type != "application/json-patch+json" && !patch.is_object() {
        return Err(ApiError::bad_request("the patch must be a JSON object"));
    }
    // Duplicate keys are a property of the patch body; unknown fields are judged on the result.
    let mode = field_validation(query)?;
    let mut warnings = if patch_type == "application/json-patch+json" || mode == "Ignore" {
        Vec::new()
    } else {
        skiff_api::field_validation::duplicate_fields(body)
    };
    if mode == "Strict" && !warnings.is_empty() {
        return Err(ApiError::bad_request(
            skiff_api::field_validation::strict_error_message(spec.kind, spec.version, &warnings),
        ));
    }
    let late = std::sync::Mutex::new(Vec::new());
    let opts = WriteOptions {
        dry_run: query.dry_run()?,
    };
    let expected = match patch["metadata"]["resourceVersion"].as_str() {
        Some(rv) if !rv.is_empty() => Some(parse_rv(rv)?),
        _ => None,
    };
    let updated = app
        .objects
        .update_with(spec, ns, name, scope, opts, expected, |old| {
            let mut new = apply_patch(spec, &patch_type, old, &patch)?;
            if let Some(rv) = old["metadata"].get("resourceVersion") {
                new["metadata"]["resourceVersion"] = rv.clone();
            }
            let raw = serde_json::to_vec(&new).unwrap_or_default();
            let problems = check_fields(spec, query, Some(&raw))?;
            *late.lock().unwrap_or_else(|e| e.into_inner()) = problems;
            skiff_api::field_validation::prune_unknown_fields(
                spec.group,
                spec.version,
                spec.kind,
                &mut new,
            );
            let mut new = app.objects.prepare_update(spec, name, old, new, scope)?;
            admission::admit_update(spec, old, &mut new, scope)?;
            Ok(new)
        })
        .await?;
    warnings.extend(late.into_inner().unwrap_or_else(|e| e.into_inner()));
    Ok(with_warnings(
        json_response(StatusCode::OK, &updated),
        &warnings,
    ))
}

fn delete_options(
    query: &Query,
    content_type: Option<&str>,
    body: &Bytes,
) -> Result<DeleteOptions> {
    let body_value = if body.is_empty() {
        Value::Null
    } else {
        request::decode_object(content_type, body)?.0
    };
    let mut opts = DeleteOptions::from_json(&body_value)?;
    if let Some(g) = query.int("gracePeriodSeconds")? {
        opts.grace_period_seconds = Some(g);
    }
    if let Some(p) = query.get("propagationPolicy").filter(|p| !p.is_empty()) {
        opts =
            DeleteOptions::from_json(&json!({"propagationPolicy": p})).map(|o| DeleteOptions {
                propagation_policy: o.propagation_policy,
                ..opts.clone()
            })?;
    }
    if query.get("orphanDependents").is_some() {
        opts.orphan_dependents = Some(query.bool("orphanDependents")?);
    }
    opts.dry_run = opts.dry_run || query.dry_run()?;
    Ok(opts)
}

async fn delete(
    app: &App,
    spec: &'static ResourceSpec,
    ns: Option<&str>,
    name: &str,
    query: &Query,
    content_type: Option<&str>,
    body: &Bytes,
) -> Result<Response> {
    let opts = delete_options(query, content_type, body)?;
    if spec.resource == "namespaces" && matches!(name, "default" | "kube-system" | "kube-public") {
        return Err(ApiError::Forbidden {
            message: format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            ),
            name: name.to_string(),
            group: String::new(),
            kind: "namespaces".into(),
        });
    }
    let out = app.objects.delete(spec, ns, name, &opts).await?;
    match out {
        Deleted::Gone(obj) => Ok(json_response(StatusCode::OK, &obj)),
        Deleted::Pending(obj) => {
            app.wake_reaper();
            Ok(json_response(StatusCode::OK, &obj))
        }
    }
}

async fn delete_collection(
    app: &App,
    spec: &'static ResourceSpec,
    ns: Option<&str>,
    query: &Query,
    content_type: Option<&str>,
    body: &Bytes,
) -> Result<Response> {
    let opts = delete_options(query, content_type, body)?;
    let selection = Selection::parse(spec, query)?;
    let lq = ListQuery {
        namespace: ns.map(str::to_string),
        ..ListQuery::default()
    };
    let page = app
        .objects
        .list(spec, &lq, &|o| selection.matches(spec, o))
        .await?;
    let mut items = Vec::new();
    for obj in page.items {
        let item_ns = obj["metadata"]["namespace"].as_str().map(str::to_string);
        let name = objects::name_of(&obj).to_string();
        match app
            .objects
            .delete(spec, item_ns.as_deref(), &name, &opts)
            .await
        {
            Ok(Deleted::Gone(o) | Deleted::Pending(o)) => items.push(o),
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    app.wake_reaper();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "kind": list_kind(spec),
            "apiVersion": spec.api_version(),
            "metadata": {"resourceVersion": page.revision.to_string()},
            "items": items,
        }),
    ))
}

/// Answer a review resource (create-only, never stored).
fn review(spec: &ResourceSpec, content_type: Option<&str>, body: &Bytes) -> Result<Response> {
    let (mut obj, _) = request::decode_object(content_type, body)?;
    request::check_kind(spec, &obj)?;
    obj["apiVersion"] = json!(spec.api_version());
    obj["kind"] = json!(spec.kind);
    if obj.get("metadata").is_none() {
        obj["metadata"] = json!({});
    }
    match spec.resource {
        "selfsubjectaccessreviews" | "subjectaccessreviews" | "localsubjectaccessreviews" => {
            obj["status"] = json!({"allowed": true, "reason": "the admin user may do everything until RBAC is enforced"});
        }
        "selfsubjectrulesreviews" => {
            obj["status"] = json!({
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                "incomplete": false,
            });
        }
        "selfsubjectreviews" => {
            obj["status"] = json!({"userInfo": {"username": "admin", "groups": ["system:masters", "system:authenticated"]}});
        }
        _ => {
            obj["status"] =
                json!({"authenticated": false, "error": "token review is not supported yet"});
        }
    }
    Ok(json_response(StatusCode::CREATED, &obj))
}

async fn bind(
    app: &App,
    ns: Option<&str>,
    name: &str,
    binding: Value,
    query: &Query,
) -> Result<Response> {
    let pods = crate::spec_of("", "pods");
    let target = binding["target"]["name"].as_str().unwrap_or("").to_string();
    if target.is_empty() {
        return Err(ApiError::invalid(
            crate::spec_of("", "bindings"),
            name,
            vec![Cause {
                reason: "FieldValueRequired".into(),
                message: "Required value".into(),
                field: "target.name".into(),
            }],
        ));
    }
    let opts = WriteOptions {
        dry_run: query.dry_run()?,
    };
    let uid_pre = binding["metadata"]["uid"].as_str().map(str::to_string);
    app.objects
        .update_with(pods, ns, name, UpdateScope::All, opts, None, |old| {
            if let Some(uid) = &uid_pre
                && old["metadata"]["uid"].as_str() != Some(uid.as_str())
            {
                return Err(ApiError::conflict_with(pods, name, "Precondition failed: UID mismatch"));
            }
            if old["metadata"]["deletionTimestamp"].is_string() {
                return Err(ApiError::conflict_with(pods, name, "pod is being deleted, cannot be assigned to a host"));
            }
            let current = old["spec"]["nodeName"].as_str().unwrap_or("");
            if !current.is_empty() {
                return Err(ApiError::conflict_with(
                    pods,
                    name,
                    &format!("pod {name} is already assigned to node \"{current}\""),
                ));
            }
            let mut new = old.clone();
            new["spec"]["nodeName"] = json!(target);
            let mut conds: Vec<Value> = old["status"]["conditions"].as_array().cloned().unwrap_or_default();
            conds.retain(|c| c["type"] != "PodScheduled");
            conds.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": objects::now_rfc3339()}));
            new["status"]["conditions"] = json!(conds);
            Ok(new)
        })
        .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

fn scale_of(spec: &ResourceSpec, obj: &Value) -> Value {
    let selector = if spec.resource == "replicationcontrollers" {
        obj["spec"]["selector"]
            .as_object()
            .map(|m| {
                let mut pairs: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect();
                pairs.sort();
                pairs.join(",")
            })
            .unwrap_or_default()
    } else {
        label_selector_string(&obj["spec"]["selector"])
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj["metadata"]["name"].clone(),
            "namespace": obj["metadata"]["namespace"].clone(),
            "uid": obj["metadata"]["uid"].clone(),
            "resourceVersion": obj["metadata"]["resourceVersion"].clone(),
            "creationTimestamp": obj["metadata"]["creationTimestamp"].clone(),
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {
            "replicas": obj["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector,
        },
    })
}

/// The string form of a `LabelSelector` object, as `metav1.FormatLabelSelector` writes it.
pub fn label_selector_string(sel: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = sel["matchLabels"].as_object() {
        let mut keys: Vec<&String> = m.keys().collect();
        keys.sort();
        for k in keys {
            parts.push(format!("{k}={}", m[k].as_str().unwrap_or("")));
        }
    }
    if let Some(exprs) = sel["matchExpressions"].as_array() {
        for e in exprs {
            let key = e["key"].as_str().unwrap_or("");
            let values: Vec<&str> = e["values"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let part = match e["operator"].as_str().unwrap_or("") {
                "In" => format!("{key} in ({})", values.join(",")),
                "NotIn" => format!("{key} notin ({})", values.join(",")),
                "Exists" => key.to_string(),
                "DoesNotExist" => format!("!{key}"),
                _ => continue,
            };
            parts.push(part);
        }
    }
    parts.join(",")
}

#[allow(clippy::too_many_arguments)]
async fn subresource(
    app: Arc<App>,
    spec: &'static ResourceSpec,
    ns: Option<&str>,
    name: &str,
    sub: &str,
    method: Method,
    query: &Query,
    content_type: Option<&str>,
    accept: Option<&str>,
    body: &Bytes,
) -> Result<Response> {
    let verb_ok = |verb: &str| {
        spec.subresource(sub)
            .is_some_and(|s| s.verbs.contains(&verb))
    };
    match (sub, method.clone()) {
        ("status", Method::GET) => {
            let obj = app.objects.get(spec, ns, name).await?;
            respond_object(spec, StatusCode::OK, &obj, query, accept)
        }
        ("status", Method::PUT) => {
            update(
                &app,
                spec,
                ns,
                name,
                UpdateScope::Status,
                query,
                content_type,
                body,
            )
            .await
        }
        ("status", Method::PATCH) => {
            patch(
                &app,
                spec,
                ns,
                name,
                UpdateScope::Status,
                query,
                content_type,
                body,
            )
            .await
        }
        ("finalize", Method::PUT) if spec.resource == "namespaces" => {
            let (obj, _) = request::decode_object(content_type, body)?;
            let finalizers = obj["spec"]["finalizers"].clone();
            let updated = app
                .objects
                .update_with(
                    spec,
                    None,
                    name,
                    UpdateScope::All,
                    WriteOptions::default(),
                    None,
                    |old| {
                        let mut new = old.clone();
                        new["spec"]["finalizers"] = finalizers.clone();
                        Ok(new)
                    },
                )
                .await?;
            app.wake_reaper();
            Ok(json_response(StatusCode::OK, &updated))
        }
        ("scale", Method::GET) => {
            let obj = app.objects.get(spec, ns, name).await?;
            Ok(json_response(StatusCode::OK, &scale_of(spec, &obj)))
        }
        ("scale", Method::PUT | Method::PATCH) => {
            let opts = WriteOptions {
                dry_run: query.dry_run()?,
            };
            let is_patch = method == Method::PATCH;
            let patch_type = request::media_type(content_type);
            let input: Value = if is_patch {
                serde_json::from_slice(body).map_err(|e| {
                    ApiError::bad_request(format!("error decoding patch body as JSON: {e}"))
                })?
            } else {
                request::decode_object(content_type, body)?.0
            };
            let expected = if is_patch {
                None
            } else {
                match input["metadata"]["resourceVersion"].as_str() {
                    Some(rv) if !rv.is_empty() => Some(parse_rv(rv)?),
                    _ => None,
                }
            };
            let updated = app
                .objects
                .update_with(spec, ns, name, UpdateScope::Main, opts, expected, |old| {
                    let current = scale_of(spec, old);
                    let desired = if is_patch {
                        let scale_spec = crate::spec_of("", "replicationcontrollers");
                        match patch_type.as_str() {
                            "application/json-patch+json" => skiff_api::patch::json_patch(&current, &input),
                            "application/strategic-merge-patch+json" | "application/merge-patch+json" => {
                                skiff_api::patch::merge_patch(&current, &input)
                            }
                            other => {
                                return Err(ApiError::UnsupportedMediaType(format!(
                                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {other})"
                                )));
                            }
                        }
                        .map_err(|e| patch_error(scale_spec, old, &e))?
                    } else {
                        input.clone()
                    };
                    let replicas = desired["spec"]["replicas"].as_i64().unwrap_or(0);
                    if replicas < 0 {
                        return Err(ApiError::Invalid {
                            qualified_kind: "Scale.autoscaling".into(),
                            group: "autoscaling".into(),
                            kind: "Scale".into(),
                            name: name.to_string(),
                            summary: format!("spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"),
                            causes: vec![Cause { reason: "FieldValueInvalid".into(), message: format!("Invalid value: {replicas}: must be greater than or equal to 0"), field: "spec.replicas".into() }],
                        });
                    }
                    let mut new = old.clone();
                    new["spec"]["replicas"] = json!(replicas);
                    Ok(new)
                })
                .await?;
            Ok(json_response(StatusCode::OK, &scale_of(spec, &updated)))
        }
        ("binding", Method::POST) if spec.resource == "pods" => {
            let (obj, _) = request::decode_object(content_type, body)?;
            bind(&app, ns, name, obj, query).await
        }
        ("eviction", Method::POST) if spec.resource == "pods" => {
            let (eviction, _) = request::decode_object(content_type, body)?;
            let mut opts = DeleteOptions::from_json(&eviction["deleteOptions"])?;
            opts.dry_run = opts.dry_run || query.dry_run()?;
            if let Some(refused) =
                check_disruption_budget(&app, spec, ns, name, opts.dry_run).await?
            {
                return Ok(refused);
            }
            app.objects.delete(spec, ns, name, &opts).await?;
            app.wake_reaper();
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        ("proxy", _) => {
            // pods/log|exec|attach|portforward never get here: `proxy.rs` takes them first.
            app.objects.get(spec, ns, name).await?;
            Err(ApiError::bad_request(format!(
                "{}/proxy is not supported by this server yet",
                spec.resource
            )))
        }
        _ if !verb_ok(match method {
            Method::GET => "get",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::POST => "create",
            Method::DELETE => "delete",
            _ => "",
        }) =>
        {
            Err(ApiError::MethodNotAllowed)
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// A `metav1.LabelSelector` (matchLabels/matchExpressions) as selector text; `None` if null.
fn label_selector_text(sel: &Value) -> Option<String> {
    if sel.is_null() {
        return None;
    }
    let mut parts: Vec<String> = Vec::new();
    for (k, v) in sel["matchLabels"].as_object().into_iter().flatten() {
        parts.push(format!("{k}={}", v.as_str().unwrap_or("")));
    }
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or("");
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e["operator"].as_str().unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    Some(parts.join(","))
}

fn too_many_requests(message: &str, cause: &str) -> Response {
    json_response(
        StatusCode::TOO_MANY_REQUESTS,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": "TooManyRequests",
            "details": {"causes": [{"reason": "DisruptionBudget", "message": cause}]},
            "code": 429}),
    )
}

/// The eviction's PodDisruptionBudget check, as upstream's eviction REST: `Some(429)` when the
/// budget allows no disruption; otherwise the budget's allowance is spent (status
/// `disruptionsAllowed` decremented, the pod noted in `disruptedPods`) and the pod may go.
async fn check_disruption_budget(
    app: &App,
    spec: &'static ResourceSpec,
    ns: Option<&str>,
    name: &str,
    dry_run: bool,
) -> Result<Option<Response>> {
    let pod = app.objects.get(spec, ns, name).await?;
    let phase = pod["status"]["phase"].as_str().unwrap_or("");
    if !pod["metadata"]["deletionTimestamp"].is_null()
        || matches!(phase, "Succeeded" | "Failed" | "Pending")
    {
        return Ok(None);
    }
    let Some(pdb_spec) = skiff_api::registry::lookup("policy", "v1", "poddisruptionbudgets") else {
        return Ok(None);
    };
    let query = ListQuery {
        namespace: ns.map(str::to_string),
        ..ListQuery::default()
    };
    let page = app.objects.list(pdb_spec, &query, &|_| true).await?;
    let labels: std::collections::BTreeMap<String, String> =
        serde_json::from_value(pod["metadata"]["labels"].clone()).unwrap_or_default();
    let matching: Vec<&Value> = page
        .items
        .iter()
        .filter(|b| {
            label_selector_text(&b["spec"]["selector"])
                .and_then(|t| LabelSelector::parse(&t).ok())
                .is_some_and(|s| s.matches(&labels))
        })
        .collect();
    let pdb = match matching.as_slice() {
        [] => return Ok(None),
        [one] => *one,
        _ => {
            return Err(ApiError::Internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
            ));
        }
    };
    const REFUSED: &str = "Cannot evict pod as it would violate the pod's disruption budget.";
    let pdb_name = pdb["metadata"]["name"].as_str().unwrap_or("").to_string();
    let status = &pdb["status"];
    let observed = status["observedGeneration"].as_i64().unwrap_or(0);
    if observed < pdb["metadata"]["generation"].as_i64().unwrap_or(0) {
        return Ok(Some(too_many_requests(
            REFUSED,
            &format!("The disruption budget {pdb_name} is still being processed by the server."),
        )));
    }
    let healthy = status["currentHealthy"].as_i64().unwrap_or(0);
    let desired = status["desiredHealthy"].as_i64().unwrap_or(0);
    let pod_ready = pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    // unhealthyPodEvictionPolicy IfHealthyBudget (the default): an unready pod may go while
    // the budget is met, without spending it.
    if !pod_ready && healthy >= desired && desired > 0 {
        return Ok(None);
    }
    let refusal = || {
        too_many_requests(
            REFUSED,
            &format!(
                "The disruption budget {pdb_name} needs {desired} healthy pods and has {healthy} currently"
            ),
        )
    };
    if status["disruptionsAllowed"].as_i64().unwrap_or(0) <= 0 {
        return Ok(Some(refusal()));
    }
    if dry_run {
        return Ok(None);
    }
    let exhausted = std::sync::atomic::AtomicBool::new(false);
    let now = crate::objects::now_rfc3339();
    app.objects
        .update_with(
            pdb_spec,
            ns,
            &pdb_name,
            UpdateScope::Status,
            WriteOptions::default(),
            None,
            |current| {
                let mut new = current.clone();
                let allowed = current["status"]["disruptionsAllowed"]
                    .as_i64()
                    .unwrap_or(0);
                if allowed <= 0 {
                    exhausted.store(true, std::sync::atomic::Ordering::SeqCst);
                    return Ok(new);
                }
                exhausted.store(false, std::sync::atomic::Ordering::SeqCst);
                new["status"]["disruptionsAllowed"] = json!(allowed - 1);
                if !new["status"]["disruptedPods"].is_object() {
                    new["status"]["disruptedPods"] = json!({});
                }
                new["status"]["disruptedPods"][name] = json!(now);
                Ok(new)
            },
        )
        .await?;
    if exhausted.load(std::sync::atomic::Ordering::SeqCst) {
        return Ok(Some(refusal()));
    }
    Ok(None)
}
