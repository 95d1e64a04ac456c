//! API semantics over raw HTTPS (curl with the admin certificate): server-owned metadata,
//! generation, status subresources, paging, resourceVersion reads, finalizers, graceful pod
//! deletion, and watch behaviour (selectors, bookmarks, Go-style booleans, 410 after compaction).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Credentials, Server, eventually};

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";
const PODS: &str = "/api/v1/namespaces/default/pods";

fn server() -> (Server, Credentials) {
    let s = Server::start();
    let c = s.credentials();
    (s, c)
}

fn ok(r: support::HttpReply, code: u16) -> Value {
    assert_eq!(r.code, code, "{}", r.body);
    r.json()
}

fn configmap(name: &str, labels: Value, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "labels": labels}, "data": data})
}

fn rv(obj: &Value) -> i64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no resourceVersion: {obj}"))
}

fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
            },
        },
    })
}

/// The events of a watch response body, one JSON object a line.
fn events(body: &str) -> Vec<Value> {
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line ({e}): {l}")))
        .collect()
}

fn summary(evs: &[Value]) -> Vec<(String, String)> {
    evs.iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or("").to_string(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn generate_name_uid_and_creation_timestamp_are_set() {
    let (_s, c) = server();
    let body =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}});
    let a = ok(c.send_json("POST", CMS, &body), 201);
    let b = ok(c.send_json("POST", CMS, &body), 201);
    let (na, nb) = (
        a["metadata"]["name"].as_str().expect("name"),
        b["metadata"]["name"].as_str().expect("name"),
    );
    assert!(na.starts_with("gen-") && na.len() == 9, "{na}");
    assert!(nb.starts_with("gen-") && nb.len() == 9, "{nb}");
    assert_ne!(na, nb);
    assert_eq!(a["metadata"]["generateName"], "gen-");
    let uid = a["metadata"]["uid"].as_str().expect("uid");
    assert_eq!(uid.len(), 36, "{uid}");
    assert_eq!(uid.matches('-').count(), 4, "{uid}");
    assert_ne!(a["metadata"]["uid"], b["metadata"]["uid"]);
    let ts = a["metadata"]["creationTimestamp"].as_str().expect("ts");
    assert!(
        ts.len() == 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "{ts}"
    );
    // The stored object is the one returned; a client-sent uid or timestamp is replaced.
    let got = ok(c.get(&format!("{CMS}/{na}")), 200);
    assert_eq!(got["metadata"]["uid"], a["metadata"]["uid"]);
    let forged = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "forged", "uid": "not-a-uid", "creationTimestamp": "2000-01-01T00:00:00Z"}});
    let f = ok(c.send_json("POST", CMS, &forged), 201);
    assert_ne!(f["metadata"]["uid"], "not-a-uid");
    assert_ne!(f["metadata"]["creationTimestamp"], "2000-01-01T00:00:00Z");
    // An update may not change the uid (immutable, as upstream validates) and its
    // creationTimestamp is ignored (upstream's BeforeUpdate keeps the old one).
    let mut upd = f.clone();
    upd["metadata"]["uid"] = json!("changed");
    let r = c.send_json("PUT", &format!("{CMS}/forged"), &upd);
    let st = r.status(422, "Invalid");
    assert!(
        st["message"]
            .as_str()
            .unwrap_or("")
            .contains("metadata.uid: Invalid value: \"changed\": field is immutable"),
        "{st}"
    );
    let mut upd = f.clone();
    upd["metadata"]["creationTimestamp"] = json!("2000-01-01T00:00:00Z");
    let u = ok(c.send_json("PUT", &format!("{CMS}/forged"), &upd), 200);
    assert_eq!(u["metadata"]["uid"], f["metadata"]["uid"]);
    assert_eq!(
        u["metadata"]["creationTimestamp"],
        f["metadata"]["creationTimestamp"]
    );
}

#[test]
fn generation_tracks_spec_changes_only() {
    let (_s, c) = server();
    let d = ok(c.send_json("POST", DEPLOYS, &deployment("web")), 201);
    assert_eq!(d["metadata"]["generation"], 1);
    let url = format!("{DEPLOYS}/web");

    // A label change does not bump generation.
    let d = ok(
        c.send_json("PATCH", &url, &json!({"metadata": {"labels": {"x": "y"}}})),
        200,
    );
    assert_eq!(d["metadata"]["labels"]["x"], "y");
    assert_eq!(d["metadata"]["generation"], 1, "{d}");

    // A spec change does.
    let d = ok(
        c.send_json("PATCH", &url, &json!({"spec": {"replicas": 3}})),
        200,
    );
    assert_eq!(d["metadata"]["generation"], 2, "{d}");

    // A status update through /status changes status only: spec edits in it are ignored and
    // generation stays.
    let mut st = d.clone();
    st["status"] = json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 3});
    st["spec"]["replicas"] = json!(7);
    let s = ok(c.send_json("PUT", &format!("{url}/status"), &st), 200);
    assert_eq!(s["status"]["readyReplicas"], 3, "{s}");
    assert_eq!(s["spec"]["replicas"], 3, "{s}");
    assert_eq!(s["metadata"]["generation"], 2, "{s}");

    // A main-resource PUT ignores status changes (and a no-op spec keeps generation).
    let mut main = s.clone();
    main["status"]["readyReplicas"] = json!(0);
    main["metadata"]["annotations"] = json!({"note": "x"});
    let m = ok(c.send_json("PUT", &url, &main), 200);
    assert_eq!(m["status"]["readyReplicas"], 3, "{m}");
    assert_eq!(m["metadata"]["annotations"]["note"], "x");
    assert_eq!(m["metadata"]["generation"], 2, "{m}");
    let got = ok(c.get(&url), 200);
    assert_eq!(got["status"]["readyReplicas"], 3);
    assert_eq!(got["spec"]["replicas"], 3);
    assert_eq!(got["metadata"]["generation"], 2);

    // A create ignores a client's status on kinds with a status subresource.
    let mut d2 = deployment("web2");
    d2["status"] = json!({"readyReplicas": 5});
    let created = ok(c.send_json("POST", DEPLOYS, &d2), 201);
    assert!(
        created["status"]["readyReplicas"].is_null(),
        "{}",
        created["status"]
    );
}

#[test]
fn limit_and_continue_page_through_a_consistent_snapshot() {
    let (_s, c) = server();
    let mut want: Vec<String> = Vec::new();
    for i in 0..25 {
        let name = format!("cm-{i:02}");
        ok(
            c.send_json("POST", CMS, &configmap(&name, json!({}), json!({}))),
            201,
        );
        want.push(name);
    }
    let mut seen: Vec<String> = Vec::new();
    let mut pages = 0;
    let mut list_rv: Option<String> = None;
    let mut cont: Option<String> = None;
    loop {
        let path = match &cont {
            None => format!("{CMS}?limit=10"),
            Some(t) => format!("{CMS}?limit=10&continue={t}"),
        };
        let page = ok(c.get(&path), 200);
        pages += 1;
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 10, "page {pages} has {}", items.len());
        seen.extend(
            items
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_string()),
        );
        let this_rv = page["metadata"]["resourceVersion"]
            .as_str()
            .expect("rv")
            .to_string();
        match &list_rv {
            None => list_rv = Some(this_rv),
            Some(r) => assert_eq!(r, &this_rv, "pages disagree on resourceVersion"),
        }
        if pages == 1 {
            // A write between pages does not show up in later pages: they read the snapshot.
            ok(
                c.send_json("POST", CMS, &configmap("cm-99", json!({}), json!({}))),
                201,
            );
        }
        match page["metadata"]["continue"].as_str() {
            Some(t) if !t.is_empty() => cont = Some(t.to_string()),
            _ => break,
        }
        assert!(pages < 10, "too many pages");
    }
    assert_eq!(pages, 3, "25 items at limit=10");
    assert_eq!(seen, want, "every name exactly once, in order");
    // A continue token with a resourceVersion is refused.
    let page = ok(c.get(&format!("{CMS}?limit=10")), 200);
    let t = page["metadata"]["continue"].as_str().expect("continue");
    let r = c.get(&format!("{CMS}?limit=10&continue={t}&resourceVersion=5"));
    assert_eq!(r.code, 400, "{}", r.body);
}

#[test]
fn resource_version_zero_and_exact_lists() {
    let (_s, c) = server();
    let v1 = ok(
        c.send_json("POST", CMS, &configmap("c", json!({}), json!({"v": "1"}))),
        201,
    );
    let old_rv = rv(&v1);
    let mut v2 = v1.clone();
    v2["data"]["v"] = json!("2");
    ok(c.send_json("PUT", &format!("{CMS}/c"), &v2), 200);
    ok(
        c.send_json("POST", CMS, &configmap("later", json!({}), json!({}))),
        201,
    );

    // resourceVersion=0: any state the server has; here, the current one.
    let l = ok(c.get(&format!("{CMS}?resourceVersion=0")), 200);
    assert_eq!(l["kind"], "ConfigMapList");
    assert!(rv(&l) > old_rv);
    let names: Vec<&str> = l["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert!(
        names.contains(&"c") && names.contains(&"later"),
        "{names:?}"
    );

    // Exact at the old revision: the old state, and the list says which revision it is.
    let l = ok(
        c.get(&format!(
            "{CMS}?resourceVersion={old_rv}&resourceVersionMatch=Exact"
        )),
        200,
    );
    assert_eq!(rv(&l), old_rv, "{l}");
    let items = l["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{l}");
    assert_eq!(items[0]["data"]["v"], "1");
    assert_eq!(rv(&items[0]), old_rv);

    // NotOlderThan at the old revision: at least as new, so the new state.
    let l = ok(
        c.get(&format!(
            "{CMS}?resourceVersion={old_rv}&resourceVersionMatch=NotOlderThan"
        )),
        200,
    );
    let cm = l["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["metadata"]["name"] == "c")
        .expect("c")
        .clone();
    assert_eq!(cm["data"]["v"], "2");
    // Exact with 0 and a match without a version are refused.
    assert_eq!(
        c.get(&format!(
            "{CMS}?resourceVersion=0&resourceVersionMatch=Exact"
        ))
        .code,
        400
    );
    assert_eq!(
        c.get(&format!("{CMS}?resourceVersionMatch=Exact")).code,
        400
    );
}

#[test]
fn finalizers_hold_a_deleted_object_until_removed() {
    let (_s, c) = server();
    let mut cm = configmap("held", json!({}), json!({}));
    cm["metadata"]["finalizers"] = json!(["example.com/keep"]);
    ok(c.send_json("POST", CMS, &cm), 201);
    let url = format!("{CMS}/held");
    let d = ok(c.request("DELETE", &url, None, None), 200);
    assert!(d["metadata"]["deletionTimestamp"].is_string(), "{d}");
    // Still readable, still listed, marked for deletion.
    let got = ok(c.get(&url), 200);
    assert!(got["metadata"]["deletionTimestamp"].is_string(), "{got}");
    assert_eq!(got["metadata"]["finalizers"], json!(["example.com/keep"]));
    // A second DELETE changes nothing and succeeds.
    let again = ok(c.request("DELETE", &url, None, None), 200);
    assert_eq!(
        again["metadata"]["deletionTimestamp"],
        got["metadata"]["deletionTimestamp"]
    );
    // No new finalizer may be added now.
    let r = c.send_json(
        "PATCH",
        &url,
        &json!({"metadata": {"finalizers": ["example.com/keep", "example.com/more"]}}),
    );
    assert_eq!(r.code, 422, "{}", r.body);
    // Other edits are still allowed while it waits.
    let e = ok(
        c.send_json("PATCH", &url, &json!({"data": {"still": "here"}})),
        200,
    );
    assert_eq!(e["data"]["still"], "here");
    // Removing the last finalizer removes the object.
    ok(
        c.send_json("PATCH", &url, &json!({"metadata": {"finalizers": null}})),
        200,
    );
    eventually(Duration::from_secs(10), "held configmap gone", || {
        (c.get(&url).code == 404).then_some(())
    });
}

#[test]
fn scheduled_pod_deletion_waits_for_its_grace_period() {
    let (_s, c) = server();
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "busybox:1.36"}]}});
    ok(c.send_json("POST", PODS, &pod), 201);
    let url = format!("{PODS}/p");
    let started = std::time::Instant::now();
    let d = ok(
        c.request("DELETE", &format!("{url}?gracePeriodSeconds=2"), None, None),
        200,
    );
    assert!(d["metadata"]["deletionTimestamp"].is_string(), "{d}");
    assert_eq!(d["metadata"]["deletionGracePeriodSeconds"], 2, "{d}");
    let got = ok(c.get(&url), 200);
    assert!(got["metadata"]["deletionTimestamp"].is_string());
    eventually(
        Duration::from_secs(15),
        "pod p gone after its grace",
        || (c.get(&url).code == 404).then_some(()),
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "pod went before its grace period: {:?}",
        started.elapsed()
    );
    // An unscheduled pod has nothing to stop: it goes at once.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}});
    ok(c.send_json("POST", PODS, &pod), 201);
    ok(c.request("DELETE", &format!("{PODS}/q"), None, None), 200);
    assert_eq!(c.get(&format!("{PODS}/q")).code, 404);
}

#[test]
fn label_selector_watch_sees_deleted_when_an_object_stops_matching() {
    let (_s, c) = server();
    let start = rv(&ok(c.get(CMS), 200));
    ok(
        c.send_json(
            "POST",
            CMS,
            &configmap("m", json!({"app": "x"}), json!({"v": "1"})),
        ),
        201,
    );
    ok(
        c.send_json(
            "POST",
            CMS,
            &configmap("other", json!({"app": "y"}), json!({})),
        ),
        201,
    );
    ok(
        c.send_json("PATCH", &format!("{CMS}/m"), &json!({"data": {"v": "2"}})),
        200,
    );
    // Relabel: m leaves the selection.
    ok(
        c.send_json(
            "PATCH",
            &format!("{CMS}/m"),
            &json!({"metadata": {"labels": {"app": "z"}}}),
        ),
        200,
    );
    // And comes back.
    ok(
        c.send_json(
            "PATCH",
            &format!("{CMS}/m"),
            &json!({"metadata": {"labels": {"app": "x"}}}),
        ),
        200,
    );
    let r = c.get(&format!(
        "{CMS}?watch=1&labelSelector=app%3Dx&resourceVersion={start}&timeoutSeconds=2"
    ));
    assert_eq!(r.code, 200, "{}", r.body);
    let evs = events(&r.body);
    let s = summary(&evs);
    let want: Vec<(String, String)> = [
        ("ADDED", "m"),
        ("MODIFIED", "m"),
        ("DELETED", "m"),
        ("ADDED", "m"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(s, want, "{evs:?}");
    // The DELETED event carries the object's new (non-matching) state.
    assert_eq!(evs[2]["object"]["metadata"]["labels"]["app"], "z");
    let rvs: Vec<i64> = evs.iter().map(|e| rv(&e["object"])).collect();
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "{rvs:?}");
}

#[test]
fn watch_booleans_parse_like_go() {
    let (_s, c) = server();
    ok(
        c.send_json("POST", CMS, &configmap("b", json!({}), json!({}))),
        201,
    );
    for v in ["1", "t", "T", "true", "True", "TRUE"] {
        let r = c.get(&format!("{CMS}?watch={v}&timeoutSeconds=1"));
        assert_eq!(r.code, 200, "watch={v}: {}", r.body);
        let evs = events(&r.body);
        assert!(
            evs.iter()
                .any(|e| e["type"] == "ADDED" && e["object"]["metadata"]["name"] == "b"),
            "watch={v} did not stream: {}",
            r.body
        );
    }
    for v in ["0", "f", "false", "False"] {
        let l = ok(c.get(&format!("{CMS}?watch={v}")), 200);
        assert_eq!(l["kind"], "ConfigMapList", "watch={v}");
    }
    for v in ["yes", "2"] {
        let r = c.get(&format!("{CMS}?watch={v}"));
        let s = r.status(400, "BadRequest");
        assert!(
            s["message"]
                .as_str()
                .unwrap_or("")
                .contains("strconv.ParseBool"),
            "{s}"
        );
    }
}

#[test]
fn bookmarks_have_the_right_shape() {
    let (_s, c) = server();
    ok(
        c.send_json("POST", CMS, &configmap("a", json!({}), json!({}))),
        201,
    );
    // The initial-events-end bookmark arrives right after the initial state.
    let r = c.get(&format!(
        "{CMS}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&resourceVersion=&timeoutSeconds=1"
    ));
    assert_eq!(r.code, 200, "{}", r.body);
    let evs = events(&r.body);
    let first_bookmark = evs
        .iter()
        .position(|e| e["type"] == "BOOKMARK")
        .unwrap_or_else(|| panic!("no initial-events-end bookmark: {evs:?}"));
    assert!(evs[..first_bookmark].iter().all(|e| e["type"] == "ADDED"));
    let b = &evs[first_bookmark]["object"];
    assert_eq!(b["kind"], "ConfigMap", "{b}");
    assert_eq!(b["apiVersion"], "v1", "{b}");
    assert_eq!(
        b["metadata"]["annotations"]["k8s.io/initial-events-end"], "true",
        "{b}"
    );
    assert!(rv(b) > 0);

    // Periodic bookmarks come at most every ~10 s; if one comes within 15 s, check its shape.
    let start = rv(&ok(c.get(CMS), 200));
    let r = c.get(&format!(
        "{CMS}?watch=1&allowWatchBookmarks=true&resourceVersion={start}&timeoutSeconds=15"
    ));
    assert_eq!(r.code, 200, "{}", r.body);
    for e in events(&r.body) {
        assert_eq!(e["type"], "BOOKMARK", "no changes were made: {e}");
        let o = &e["object"];
        assert_eq!(o["kind"], "ConfigMap", "{o}");
        assert_eq!(o["apiVersion"], "v1", "{o}");
        assert!(rv(o) >= start, "{o}");
        assert!(o["metadata"].get("name").is_none(), "{o}");
    }
}

/// COMPACTION: needs the server's `--compaction-interval` flag. Upstream answers a watch from a
/// compacted resourceVersion with HTTP 200 and one ERROR event carrying a 410 Expired Status.
#[test]
fn compaction_watch_from_a_compacted_rv_is_an_error_event() {
    let s = Server::start_with(&["--compaction-interval", "1"]);
    let c = s.credentials();
    let first = ok(
        c.send_json("POST", CMS, &configmap("c", json!({}), json!({"v": "0"}))),
        201,
    );
    let early = rv(&first);
    let err = eventually(Duration::from_secs(20), "a 410 for the early rv", || {
        let patch = json!({"data": {"v": format!("{:?}", std::time::Instant::now())}});
        ok(c.send_json("PATCH", &format!("{CMS}/c"), &patch), 200);
        std::thread::sleep(Duration::from_millis(500));
        let r = c.get(&format!(
            "{CMS}?watch=1&resourceVersion={early}&timeoutSeconds=1"
        ));
        assert_eq!(
            r.code, 200,
            "upstream starts the watch and sends the 410 as an ERROR event: {}",
            r.body
        );
        events(&r.body).into_iter().find(|e| e["type"] == "ERROR")
    });
    let st = &err["object"];
    assert_eq!(st["kind"], "Status", "{st}");
    assert_eq!(st["code"], 410, "{st}");
    assert_eq!(st["reason"], "Expired", "{st}");
    assert!(
        st["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("too old resource version: "),
        "{st}"
    );
    // A list at the compacted revision is a plain 410.
    c.get(&format!(
        "{CMS}?resourceVersion={early}&resourceVersionMatch=Exact"
    ))
    .status(410, "Expired");
}
