//! Object semantics on top of the store: keys, uid and timestamps, resourceVersion from the
//! store revision, optimistic concurrency, generation, status subresources, graceful deletion
//! and finalizers. Everything the API promises about an object's life happens here, once, for
//! every kind.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use skiff_api::registry::ResourceSpec;
use skiff_store::{KeyValue, RangeOptions, Revision, Store};

use crate::error::{ApiError, Result};

/// Kinds whose `metadata.generation` tracks spec changes, as upstream strategies do.
const GENERATION_TRACKED: &[&str] = &[
    "deployments",
    "replicasets",
    "statefulsets",
    "daemonsets",
    "replicationcontrollers",
    "jobs",
    "cronjobs",
    "horizontalpodautoscalers",
    "poddisruptionbudgets",
    "ingresses",
    "networkpolicies",
    "customresourcedefinitions",
    "validatingwebhookconfigurations",
    "mutatingwebhookconfigurations",
];

/// Resources whose status a create does not accept (upstream's PrepareForCreate resets it).
fn resets_status_on_create(spec: &ResourceSpec) -> bool {
    spec.subresource("status").is_some() && !matches!(spec.resource, "nodes" | "namespaces")
}

/// How a write is applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// `dryRun=All`: run every step, store nothing.
    pub dry_run: bool,
}

/// Which part of an object an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateScope {
    /// The main resource: everything but status (for kinds with a status subresource).
    Main,
    /// The status subresource: status only.
    Status,
    /// Internal writes (finalizer removal by the server itself): everything.
    All,
}

/// The body of a DELETE.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeleteOptions {
    /// Seconds before the object goes; `None` uses the object's default.
    pub grace_period_seconds: Option<i64>,
    /// `Orphan`, `Background` or `Foreground`.
    pub propagation_policy: Option<String>,
    /// Legacy `orphanDependents`.
    pub orphan_dependents: Option<bool>,
    /// Precondition on uid.
    pub precondition_uid: Option<String>,
    /// Precondition on resourceVersion.
    pub precondition_resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

impl DeleteOptions {
    /// Parse a `DeleteOptions` JSON body (possibly empty).
    pub fn from_json(body: &Value) -> Result<Self> {
        if body.is_null() {
            return Ok(Self::default());
        }
        let obj = body
            .as_object()
            .ok_or_else(|| ApiError::bad_request("DeleteOptions must be a JSON object"))?;
        let grace =
            match obj.get("gracePeriodSeconds") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_i64().ok_or_else(|| {
                    ApiError::bad_request("gracePeriodSeconds must be an integer")
                })?),
            };
        let policy = obj
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(p) = &policy
            && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
        {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
        let dry_run = obj
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"));
        Ok(Self {
            grace_period_seconds: grace,
            propagation_policy: policy,
            orphan_dependents: obj.get("orphanDependents").and_then(Value::as_bool),
            precondition_uid: body["preconditions"]["uid"].as_str().map(str::to_string),
            precondition_resource_version: body["preconditions"]["resourceVersion"]
                .as_str()
                .map(str::to_string),
            dry_run,
        })
    }
}

/// What a DELETE did.
#[derive(Debug, Clone, PartialEq)]
pub enum Deleted {
    /// The object is gone; this was its last state.
    Gone(Value),
    /// The object remains while finalizers run or its grace period lasts.
    Pending(Value),
}

/// A page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage {
    /// The objects.
    pub items: Vec<Value>,
    /// The revision the list was read at.
    pub revision: Revision,
    /// The continue token for the next page.
    pub continue_token: Option<String>,
    /// How many more items there are, when known.
    pub remaining: Option<i64>,
}

/// How to list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Namespace to restrict to.
    pub namespace: Option<String>,
    /// Page size.
    pub limit: Option<usize>,
    /// Continue token from a previous page.
    pub continue_token: Option<String>,
    /// Read at exactly this revision.
    pub exact_revision: Option<Revision>,
    /// Require at least this revision.
    pub min_revision: Option<Revision>,
}

/// The object store of the API server.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn Store>,
}

/// The storage key of an object.
pub fn object_key(spec: &ResourceSpec, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if spec.namespaced => format!("{}{ns}/{name}", spec.key_prefix()),
        _ => format!("{}{name}", spec.key_prefix()),
    }
}

/// The key prefix of a namespace's objects of `spec` (or all of them).
pub fn list_prefix(spec: &ResourceSpec, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if spec.namespaced => format!("{}{ns}/", spec.key_prefix()),
        _ => spec.key_prefix(),
    }
}

/// Decode a stored value and stamp its resourceVersion.
pub fn decode(kv: &KeyValue) -> Result<Value> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::Internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
    set_resource_version(&mut obj, kv.mod_revision);
    Ok(obj)
}

/// Set `metadata.resourceVersion`.
pub fn set_resource_version(obj: &mut Value, revision: Revision) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(revision.to_string()));
    }
}

/// Metadata fields the store does not keep: the revision is the store's, selfLink is gone.
const UNSTORED_METADATA: [&str; 2] = ["resourceVersion", "selfLink"];

/// An object as stored: itself without [`UNSTORED_METADATA`], serialized without a copy.
struct Stored<'a>(&'a Value);

/// `metadata` without [`UNSTORED_METADATA`].
struct StoredMeta<'a>(&'a Map<String, Value>);

impl serde::Serialize for Stored<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(top) = self.0 else {
            return self.0.serialize(s);
        };
        let mut map = s.serialize_map(Some(top.len()))?;
        for (k, v) in top {
            match v {
                Value::Object(meta) if k == "metadata" => {
                    map.serialize_entry(k, &StoredMeta(meta))?
                }
                _ => map.serialize_entry(k, v)?,
            }
        }
        map.end()
    }
}

impl serde::Serialize for StoredMeta<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for (k, v) in self.0 {
            if !UNSTORED_METADATA.contains(&k.as_str()) {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

fn encode(obj: &Value) -> Result<Bytes> {
    serde_json::to_vec(&Stored(obj))
        .map(Bytes::from)
        .map_err(|e| ApiError::Internal(format!("encoding object: {e}")))
}

/// Whether two objects are equal but for their resourceVersion, without copying them.
fn same_but_rv(a: &Value, b: &Value) -> bool {
    let (Value::Object(a), Value::Object(b)) = (a, b) else {
        return a == b;
    };
    if a.len() != b.len() {
        return false;
    }
    a.iter().all(|(k, va)| {
        let Some(vb) = b.get(k) else { return false };
        match (k.as_str(), va, vb) {
            ("metadata", Value::Object(ma), Value::Object(mb)) => {
                let count = |m: &Map<String, Value>| {
                    m.len() - usize::from(m.contains_key("resourceVersion"))
                };
                count(ma) == count(mb)
                    && ma
                        .iter()
                        .filter(|(f, _)| f.as_str() != "resourceVersion")
                        .all(|(f, v)| mb.get(f) == Some(v))
            }
            _ => va == vb,
        }
    })
}

/// The current time as Kubernetes writes timestamps (RFC 3339, seconds).
pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata was made an object just above")
}

/// `metadata.name` of an object, or "".
pub fn name_of(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn generate_suffix() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..5)
        .map(|_| NAME_CHARS[rng.random_range(0..NAME_CHARS.len())] as char)
        .collect()
}

/// Compute a pod's QoS class from its containers' requests and limits.
pub fn pod_qos_class(pod: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    let containers = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            pod["spec"]["initContainers"]
                .as_array()
                .into_iter()
                .flatten(),
        );
    for c in containers {
        let req = &c["resources"]["requests"];
        let lim = &c["resources"]["limits"];
        for r in ["cpu", "memory"] {
            let (q, l) = (req.get(r), lim.get(r));
            if q.is_some() || l.is_some() {
                any = true;
            }
            match (q, l) {
                (_, None) => guaranteed = false,
                (Some(q), Some(l)) if q != l => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

impl Objects {
    /// Objects over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Read one object.
    pub async fn get(&self, spec: &ResourceSpec, ns: Option<&str>, name: &str) -> Result<Value> {
        match self.store.get(&object_key(spec, ns, name)).await? {
            Some(kv) => decode(&kv),
            None => Err(ApiError::not_found(spec, name)),
        }
    }

    async fn get_kv(&self, spec: &ResourceSpec, ns: Option<&str>, name: &str) -> Result<KeyValue> {
        self.store
            .get(&object_key(spec, ns, name))
            .await?
            .ok_or_else(|| ApiError::not_found(spec, name))
    }

    /// Whether namespace `ns` exists; errors if it is missing or (for creates) terminating.
    pub async fn check_namespace(&self, spec: &ResourceSpec, ns: &str, name: &str) -> Result<()> {
        let ns_spec = crate::spec_of("", "namespaces");
        let nsobj = match self.store.get(&object_key(ns_spec, None, ns)).await? {
            Some(kv) => decode(&kv)?,
            None => return Err(ApiError::namespace_not_found(ns)),
        };
        if nsobj["metadata"]["deletionTimestamp"].is_string() {
            return Err(ApiError::Forbidden {
                message: format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    spec.qualified_resource()
                ),
                name: name.to_string(),
                group: spec.group.to_string(),
                kind: spec.resource.to_string(),
            });
        }
        Ok(())
    }

    /// List objects, one page at a time, filtered by `keep`.
    pub async fn list(
        &self,
        spec: &ResourceSpec,
        query: &ListQuery,
        keep: &(dyn Fn(&Value) -> bool + Sync),
    ) -> Result<ListPage> {
        let prefix = list_prefix(spec, query.namespace.as_deref());
        let (mut revision, mut start_after) = match &query.continue_token {
            Some(token) => {
                let (rev, start) = decode_continue(token)?;
                if !start.starts_with(&prefix) {
                    return Err(ApiError::bad_request(
                        "continue key is not valid for this list",
                    ));
                }
                (Some(rev), Some(start))
            }
            None => (query.exact_revision, None),
        };
        if let Some(min) = query.min_revision {
            let current = self.store.current_revision().await?;
            if min > current {
                return Err(ApiError::TooLargeResourceVersion {
                    requested: min,
                    current,
                });
            }
        }
        let limit = query.limit.filter(|l| *l > 0);
        let mut items = Vec::new();
        loop {
            let page = self
                .store
                .range(
                    &prefix,
                    RangeOptions {
                        revision,
                        limit: limit.map(|l| (l - items.len()).max(1) + 1),
                        start_after: start_after.clone(),
                    },
                )
                .await
                .map_err(|e| match e {
                    skiff_store::Error::Compacted { .. } if query.continue_token.is_some() => {
                        ApiError::Expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.".into())
                    }
                    skiff_store::Error::Compacted { requested, compacted } => ApiError::Expired(
                        format!("too old resource version: {requested} ({compacted})"),
                    ),
                    other => other.into(),
                })?;
            revision = Some(page.revision);
            let mut last_key = None;
            for kv in &page.kvs {
                last_key = Some(kv.key.clone());
                let obj = decode(kv)?;
                if keep(&obj) {
                    items.push(obj);
                    if limit.is_some_and(|l| items.len() >= l) {
                        break;
                    }
                }
            }
            let full = limit.is_some_and(|l| items.len() >= l);
            let exhausted = !page.more && last_key.as_ref() == page.kvs.last().map(|kv| &kv.key);
            if full {
                let more = !exhausted;
                let token = match (&last_key, more) {
                    (Some(k), true) => Some(encode_continue(page.revision, k)),
                    _ => None,
                };
                return Ok(ListPage {
                    items,
                    revision: page.revision,
                    continue_token: token,
                    remaining: None,
                });
            }
            if !page.more || page.kvs.is_empty() {
                return Ok(ListPage {
                    items,
                    revision: page.revision,
                    continue_token: None,
                    remaining: None,
                });
            }
            start_after = last_key;
        }
    }

    /// Create an object. `obj` has passed admission; this fills the server-owned metadata.
    pub async fn create(
        &self,
        spec: &ResourceSpec,
        ns: Option<&str>,
        obj: Value,
        opts: WriteOptions,
    ) -> Result<Value> {
        Ok(self.create_json(spec, ns, obj, opts).await?.0)
    }

    /// [`Objects::create`], with the created object also as JSON text (the stored bytes with
    /// its resourceVersion), so a response needs no second encoding.
    pub async fn create_json(
        &self,
        spec: &ResourceSpec,
        ns: Option<&str>,
        obj: Value,
        opts: WriteOptions,
    ) -> Result<(Value, String)> {
        let (obj, stored) = self.create_stored(spec, ns, obj, opts).await?;
        let rev = obj["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|r| r.parse().ok());
        let json = match (stored, rev) {
            (Some(bytes), Some(rev)) => crate::rawjson::with_resource_version(&bytes, rev),
            _ => None,
        }
        .unwrap_or_else(|| obj.to_string());
        Ok((obj, json))
    }

    async fn create_stored(
        &self,
        spec: &ResourceSpec,
        ns: Option<&str>,
        mut obj: Value,
        opts: WriteOptions,
    ) -> Result<(Value, Option<Bytes>)> {
        self.prepare_create(spec, ns, &mut obj)?;
        let name = name_of(&obj).to_string();
        if let Some(ns) = ns.filter(|_| spec.namespaced) {
            self.check_namespace(spec, ns, &name).await?;
        }
        let key = object_key(spec, ns, &name);
        if opts.dry_run {
            if self.store.get(&key).await?.is_some() {
                return Err(ApiError::already_exists(spec, &name));
            }
            return Ok((obj, None));
        }
        let bytes = encode(&obj)?;
        match self.store.create(&key, bytes.clone()).await {
            Ok(kv) => {
                set_resource_version(&mut obj, kv.mod_revision);
                Ok((obj, Some(bytes)))
            }
            Err(skiff_store::Error::AlreadyExists { .. }) => {
                Err(ApiError::already_exists(spec, &name))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn prepare_create(&self, spec: &ResourceSpec, ns: Option<&str>, obj: &mut Value) -> Result<()> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the object must be a JSON object"));
        }
        obj["apiVersion"] = json!(spec.api_version());
        obj["kind"] = json!(spec.kind);
        let track_generation = GENERATION_TRACKED.contains(&spec.resource);
        let meta = meta_mut(obj);
        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            match meta.get("generateName").and_then(Value::as_str) {
                Some(base) if !base.is_empty() => {
                    let base: String = base.chars().take(58).collect();
                    meta.insert("name".into(), json!(format!("{base}{}", generate_suffix())));
                }
                _ => {
                    return Err(ApiError::Invalid {
                        qualified_kind: spec.qualified_kind(),
                        group: spec.group.to_string(),
                        kind: spec.kind.to_string(),
                        name: String::new(),
                        summary: "metadata.name: Required value: name or generateName is required"
                            .into(),
                        causes: vec![crate::error::Cause {
                            reason: "FieldValueRequired".into(),
                            message: "Required value: name or generateName is required".into(),
                            field: "metadata.name".into(),
                        }],
                    });
                }
            }
        }
        if spec.namespaced {
            let ns = ns.unwrap_or("default");
            match meta.get("namespace").and_then(Value::as_str) {
                Some(given) if !given.is_empty() && given != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            meta.remove("namespace");
        }
        if meta
            .get("uid")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        }
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        meta.remove("selfLink");
        meta.remove("managedFields");
        if track_generation {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        if resets_status_on_create(spec)
            && let Some(o) = obj.as_object_mut()
        {
            o.remove("status");
        }
        if spec.resource == "pods" {
            let qos = pod_qos_class(obj);
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        Ok(())
    }

    /// Replace an object (PUT), honouring optimistic concurrency when the body carries a
    /// resourceVersion.
    pub async fn update(
        &self,
        spec: &ResourceSpec,
        ns: Option<&str>,
        name: &str,
        obj: Value,
        scope: UpdateScope,
        opts: WriteOptions,
    ) -> Result<Value> {
        let expected = match obj["metadata"]["resourceVersion"].as_str() {
            Some(rv) if !rv.is_empty() => Some(parse_rv(rv)?),
            _ => None,
        };
        self.update_with(spec, ns, name, scope, opts, expected, |_| Ok(obj.clone()))
            .await
    }

    /// Read-modify-write: `mutate` gets the current object and returns the desired one; retried
    /// on conflicts unless `expected` pins a resourceVersion.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_with(
        &self,
        spec: &ResourceSpec,
        ns: Option<&str>,
        name: &str,
        scope: UpdateScope,
        opts: WriteOptions,
        expected: Option<Revision>,
        mutate: impl Fn(&Value) -> Result<Value>,
    ) -> Result<Value> {
        for _attempt in 0..16 {
            let kv = self.get_kv(spec, ns, name).await?;
            if let Some(rv) = expected
                && rv != kv.mod_revision
            {
                return Err(ApiError::conflict(spec, name));
            }
            let old = decode(&kv)?;
            let desired = mutate(&old)?;
            let new = self.prepare_update(spec, name, &old, desired, scope)?;
            if same_but_rv(&new, &old) {
                return Ok(old);
            }
            if opts.dry_run {
                return Ok(new);
            }
            // An update that removes the last finalizer of an object being deleted deletes it.
            if self.deletion_due(spec, &new) {
                match self.store.delete(&kv.key, Some(kv.mod_revision)).await {
                    Ok(deleted) => {
                        let mut gone = new;
                        set_resource_version(&mut gone, deleted.mod_revision);
                        return Ok(gone);
                    }
                    Err(skiff_store::Error::Conflict { .. }) if expected.is_none() => continue,
                    Err(skiff_store::Error::Conflict { .. }) => {
                        return Err(ApiError::conflict(spec, name));
                    }
                    Err(skiff_store::Error::NotFound { .. }) => {
                        return Err(ApiError::not_found(spec, name));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            match self
                .store
                .update(&kv.key, encode(&new)?, Some(kv.mod_revision))
                .await
            {
                Ok(written) => {
                    let mut out = new;
                    set_resource_version(&mut out, written.mod_revision);
                    return Ok(out);
                }
                Err(skiff_store::Error::Conflict { .. }) if expected.is_none() => continue,
                Err(skiff_store::Error::Conflict { .. }) => {
                    return Err(ApiError::conflict(spec, name));
                }
                Err(skiff_store::Error::NotFound { .. }) => {
                    return Err(ApiError::not_found(spec, name));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::conflict(spec, name))
    }

    /// Whether an object marked for deletion may now be removed: no finalizer left (for
    /// namespaces, no spec finalizer either) and no grace period running.
    fn deletion_due(&self, spec: &ResourceSpec, obj: &Value) -> bool {
        obj["metadata"]["deletionTimestamp"].is_string()
            && finalizers(obj).is_empty()
            && (spec.resource != "namespaces"
                || obj["spec"]["finalizers"]
                    .as_array()
                    .is_none_or(|a| a.is_empty()))
            && !self.grace_pending(spec, obj)
    }

    fn grace_pending(&self, spec: &ResourceSpec, obj: &Value) -> bool {
        if spec.resource != "pods" {
            return false;
        }
        let Some(ts) = obj["metadata"]["deletionTimestamp"].as_str() else {
            return false;
        };
        ts.parse::<jiff::Timestamp>()
            .is_ok_and(|deadline| deadline > jiff::Timestamp::now())
    }

    /// Carry the server-owned parts of `old` into `new` (name, namespace, uid, timestamps,
    /// generation; status or everything else by `scope`), as upstream's BeforeUpdate does before
    /// validation. Idempotent: applying it twice gives the same object.
    pub fn prepare_update(
        &self,
        spec: &ResourceSpec,
        name: &str,
        old: &Value,
        mut new: Value,
        scope: UpdateScope,
    ) -> Result<Value> {
        if !new.is_object() {
            return Err(ApiError::bad_request("the object must be a JSON object"));
        }
        let new_name = name_of(&new);
        if !new_name.is_empty() && new_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({new_name}) does not match the name on the URL ({name})"
            )));
        }
        if spec.namespaced {
            let new_ns = new["metadata"]["namespace"].as_str().unwrap_or("");
            let old_ns = old["metadata"]["namespace"].as_str().unwrap_or("");
            if !new_ns.is_empty() && new_ns != old_ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        new["apiVersion"] = json!(spec.api_version());
        new["kind"] = json!(spec.kind);
        let has_status = spec.subresource("status").is_some();
        match scope {
            UpdateScope::Main if has_status => {
                // Spec writes cannot change status.
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(o) = new.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            UpdateScope::Status => {
                // Status writes change status only: everything else comes from the stored object.
                let status = new.get("status").cloned();
                let mut merged = old.clone();
                match status {
                    Some(s) => merged["status"] = s,
                    None => {
                        if let Some(o) = merged.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
                if let Some(rv) = new["metadata"].get("resourceVersion").cloned() {
                    merged["metadata"]["resourceVersion"] = rv;
                }
                new = merged;
            }
            UpdateScope::Main | UpdateScope::All => {}
        }
        // Server-owned metadata cannot be changed by clients. A missing uid is the stored one;
        // a different one is left for validation to refuse as immutable, as upstream does.
        let old_meta = old["metadata"].clone();
        let meta = meta_mut(&mut new);
        if meta
            .get("uid")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
            && let Some(uid) = old_meta.get("uid")
        {
            meta.insert("uid".into(), uid.clone());
        }
        for field in [
            "creationTimestamp",
            "namespace",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old_meta.get(field) {
                Some(v) => {
                    meta.insert(field.into(), v.clone());
                }
                None => {
                    meta.remove(field);
                }
            }
        }
        meta.insert("name".into(), json!(name));
        meta.remove("selfLink");
        // A finalizer cannot be added to an object that is going away.
        if old_meta["deletionTimestamp"].is_string() {
            let old_f = finalizers(old);
            let new_f = finalizers(&new);
            if let Some(added) = new_f.iter().find(|f| !old_f.contains(f)) {
                return Err(ApiError::invalid(
                    spec,
                    name,
                    vec![crate::error::Cause {
                        reason: "FieldValueForbidden".into(),
                        message: format!(
                            "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{\"{added}\"}}"
                        ),
                        field: "metadata.finalizers".into(),
                    }],
                ));
            }
        }
        if GENERATION_TRACKED.contains(&spec.resource) && spec_part(&new) != spec_part(old) {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            new["metadata"]["generation"] = json!(g);
        }
        Ok(new)
    }

    /// Delete an object: immediately, or by marking it for deletion while finalizers run or a
    /// pod's grace period lasts.
    pub async fn delete(
        &self,
        spec: &ResourceSpec,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted> {
        for _attempt in 0..16 {
            let kv = self.get_kv(spec, ns, name).await?;
            let old = decode(&kv)?;
            if let Some(uid) = &opts.precondition_uid {
                let actual = old["metadata"]["uid"].as_str().unwrap_or("");
                if uid != actual {
                    return Err(ApiError::conflict_with(
                        spec,
                        name,
                        &format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                        ),
                    ));
                }
            }
            if let Some(rv) = &opts.precondition_resource_version {
                let actual = kv.mod_revision.to_string();
                if *rv != actual {
                    return Err(ApiError::conflict_with(
                        spec,
                        name,
                        &format!(
                            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"
                        ),
                    ));
                }
            }
            let mut marked = old.clone();
            let mut fins = finalizers(&old);
            let policy = match (&opts.propagation_policy, opts.orphan_dependents) {
                (Some(p), _) => Some(p.as_str()),
                (None, Some(true)) => Some("Orphan"),
                (None, _) => None,
            };
            let add = |fins: &mut Vec<String>, f: &str| {
                if !fins.iter().any(|x| x == f) {
                    fins.push(f.to_string());
                }
            };
            // Namespaces always finalize their contents first.
            let is_namespace = spec.resource == "namespaces";
            match policy {
                Some("Orphan") if !is_namespace => {
                    add(&mut fins, "orphan");
                    fins.retain(|f| f != "foregroundDeletion");
                }
                Some("Foreground") if !is_namespace => {
                    add(&mut fins, "foregroundDeletion");
                    fins.retain(|f| f != "orphan");
                }
                _ => {}
            }
            let already_deleting = old["metadata"]["deletionTimestamp"].is_string();
            let grace = self.grace_seconds(spec, &old, opts);
            let namespace_content = is_namespace
                && old["spec"]["finalizers"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty());
            if fins.is_empty() && grace == 0 && !namespace_content {
                if opts.dry_run {
                    return Ok(Deleted::Gone(old));
                }
                match self.store.delete(&kv.key, Some(kv.mod_revision)).await {
                    Ok(deleted) => {
                        let mut gone = old;
                        set_resource_version(&mut gone, deleted.mod_revision);
                        return Ok(Deleted::Gone(gone));
                    }
                    Err(skiff_store::Error::Conflict { .. }) => continue,
                    Err(skiff_store::Error::NotFound { .. }) => {
                        return Err(ApiError::not_found(spec, name));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            // Graceful: mark and keep.
            let now = jiff::Timestamp::now();
            let meta = meta_mut(&mut marked);
            if !fins.is_empty() {
                meta.insert("finalizers".into(), json!(fins));
            }
            let deadline = jiff::Timestamp::from_second(now.as_second() + grace).unwrap_or(now);
            let shorten = match meta.get("deletionTimestamp").and_then(Value::as_str) {
                Some(existing) => existing
                    .parse::<jiff::Timestamp>()
                    .is_ok_and(|t| deadline < t),
                None => true,
            };
            if !already_deleting || shorten {
                meta.insert("deletionTimestamp".into(), json!(deadline.to_string()));
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            if is_namespace {
                marked["status"]["phase"] = json!("Terminating");
            }
            if same_but_rv(&marked, &old) {
                return Ok(Deleted::Pending(old));
            }
            if opts.dry_run {
                return Ok(Deleted::Pending(marked));
            }
            match self
                .store
                .update(&kv.key, encode(&marked)?, Some(kv.mod_revision))
                .await
            {
                Ok(written) => {
                    set_resource_version(&mut marked, written.mod_revision);
                    return Ok(Deleted::Pending(marked));
                }
                Err(skiff_store::Error::Conflict { .. }) => continue,
                Err(skiff_store::Error::NotFound { .. }) => {
                    return Err(ApiError::not_found(spec, name));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::conflict(spec, name))
    }

    fn grace_seconds(&self, spec: &ResourceSpec, obj: &Value, opts: &DeleteOptions) -> i64 {
        if spec.resource != "pods" {
            return 0;
        }
        // A pod that never reached a node has nothing to stop.
        let unscheduled = obj["spec"]["nodeName"].as_str().unwrap_or("").is_empty();
        let finished = matches!(
            obj["status"]["phase"].as_str(),
            Some("Succeeded") | Some("Failed")
        );
        if unscheduled || finished {
            return 0;
        }
        let grace = opts
            .grace_period_seconds
            .or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30);
        grace.max(0)
    }

    /// Remove an object whose deletion is due (grace over, no finalizers left).
    pub async fn finish_deletion(
        &self,
        spec: &ResourceSpec,
        ns: Option<&str>,
        name: &str,
    ) -> Result<bool> {
        let Some(kv) = self.store.get(&object_key(spec, ns, name)).await? else {
            return Ok(false);
        };
        let obj = decode(&kv)?;
        if !self.deletion_due(spec, &obj) {
            return Ok(false);
        }
        match self.store.delete(&kv.key, Some(kv.mod_revision)).await {
            Ok(_) => Ok(true),
            Err(skiff_store::Error::Conflict { .. } | skiff_store::Error::NotFound { .. }) => {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Parse a resourceVersion string.
pub fn parse_rv(rv: &str) -> Result<Revision> {
    rv.parse::<Revision>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version: \"{rv}\"")))
}

fn encode_continue(revision: Revision, start: &str) -> String {
    use base64::Engine;
    let token = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": start});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(Revision, String)> {
    use base64::Engine;
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rev = v["rv"].as_i64().ok_or_else(bad)?;
    let start = v["start"].as_str().ok_or_else(bad)?.to_string();
    Ok((rev, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_encoding_drops_only_the_unstored_metadata() {
        let obj = json!({
            "kind": "Pod",
            "metadata": {"name": "p", "resourceVersion": "9", "selfLink": "/x", "labels": {"resourceVersion": "kept"}},
            "spec": {"template": {"metadata": {"resourceVersion": "nested stays"}}},
        });
        let stored: Value = serde_json::from_slice(&encode(&obj).expect("encode")).expect("JSON");
        let mut expected = obj.clone();
        let meta = expected["metadata"].as_object_mut().expect("metadata");
        meta.remove("resourceVersion");
        meta.remove("selfLink");
        assert_eq!(stored, expected);
    }

    #[test]
    fn equality_ignores_the_resource_version_alone() {
        let a = json!({"metadata": {"name": "p", "resourceVersion": "1"}, "spec": {"x": 1}});
        let b = json!({"metadata": {"name": "p", "resourceVersion": "2"}, "spec": {"x": 1}});
        let c = json!({"metadata": {"name": "p"}, "spec": {"x": 1}});
        let d = json!({"metadata": {"name": "p", "resourceVersion": "1"}, "spec": {"x": 2}});
        let e = json!({"metadata": {"name": "q", "resourceVersion": "1"}, "spec": {"x": 1}});
        assert!(same_but_rv(&a, &b));
        assert!(same_but_rv(&a, &c));
        assert!(same_but_rv(&c, &a));
        assert!(!same_but_rv(&a, &d));
        assert!(!same_but_rv(&a, &e));
    }
}
