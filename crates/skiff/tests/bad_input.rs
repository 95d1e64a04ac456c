//! Bad input over raw HTTPS (curl with the admin client certificate): every malformed, oversized,
//! mismatched or unauthorized request gets the right HTTP code and a `Status` with upstream's
//! reason and a message naming the problem, nothing is stored, and the server keeps serving.

mod support;

use serde_json::{Value, json};
use support::{Credentials, Server};

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";

fn server() -> (Server, Credentials) {
    let s = Server::start();
    let c = s.credentials();
    (s, c)
}

/// The server still answers a normal request after the bad one.
fn still_serving(c: &Credentials) {
    let r = c.get("/api/v1/namespaces/default");
    assert_eq!(r.code, 200, "server stopped serving: {}", r.body);
    assert_eq!(r.json()["metadata"]["name"], "default");
}

/// No configmap named `name` exists in default, by GET and by list.
fn no_configmap(c: &Credentials, name: &str) {
    let r = c.get(&format!("{CMS}/{name}"));
    assert_eq!(r.code, 404, "configmap {name} was stored: {}", r.body);
    let list = c.get(CMS).json();
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert!(!names.contains(&name), "{name} listed: {names:?}");
}

fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    })
}

fn message(s: &Value) -> &str {
    s["message"].as_str().unwrap_or("")
}

#[test]
fn malformed_json_is_400_and_stores_nothing() {
    let (_s, c) = server();
    let r = c.request(
        "POST",
        CMS,
        Some("application/json"),
        Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"broken"},"data":{"#),
    );
    let s = r.status(400, "BadRequest");
    assert!(
        message(&s).contains("JSON") || message(&s).contains("json"),
        "{s}"
    );
    no_configmap(&c, "broken");
    still_serving(&c);
}

#[test]
fn wrong_kind_for_the_url_is_400() {
    let (_s, c) = server();
    let body = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "wrongkind"}});
    let s = c.send_json("POST", CMS, &body).status(400, "BadRequest");
    assert!(
        message(&s).contains("Secret") && message(&s).contains("ConfigMap"),
        "{s}"
    );
    no_configmap(&c, "wrongkind");
    // A wrong apiVersion for the URL's group is refused the same way.
    let body =
        json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "wrongkind"}});
    let s = c.send_json("POST", CMS, &body).status(400, "BadRequest");
    assert!(message(&s).contains("apps/v1"), "{s}");
    no_configmap(&c, "wrongkind");
    still_serving(&c);
}

#[test]
fn name_mismatch_on_put_is_400_and_changes_nothing() {
    let (_s, c) = server();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}, "data": {"v": "1"}});
    assert_eq!(c.send_json("POST", CMS, &cm).code, 201);
    let wrong = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"v": "2"}});
    let s = c
        .send_json("PUT", &format!("{CMS}/b"), &wrong)
        .status(400, "BadRequest");
    assert_eq!(
        message(&s),
        "the name of the object (a) does not match the name on the URL (b)"
    );
    assert_eq!(c.get(&format!("{CMS}/b")).json()["data"]["v"], "1");
    no_configmap(&c, "a");
    // The name is checked before the object is looked up, as upstream does.
    let s = c
        .send_json("PUT", &format!("{CMS}/missing"), &wrong)
        .status(400, "BadRequest");
    assert_eq!(
        message(&s),
        "the name of the object (a) does not match the name on the URL (missing)"
    );
    // A matching PUT without uid or namespace is filled in from the stored object.
    let minimal = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}, "data": {"v": "3"}});
    let r = c.send_json("PUT", &format!("{CMS}/b"), &minimal);
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.json()["data"]["v"], "3");
    assert_eq!(r.json()["metadata"]["namespace"], "default");
    still_serving(&c);
}

#[test]
fn invalid_name_is_422_with_the_rfc1123_message() {
    let (_s, c) = server();
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Foo_Bar"}});
    let s = c.send_json("POST", CMS, &body).status(422, "Invalid");
    let msg = message(&s);
    assert!(
        msg.starts_with(r#"ConfigMap "Foo_Bar" is invalid: metadata.name: Invalid value: "Foo_Bar": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters"#),
        "{msg}"
    );
    let causes = s["details"]["causes"].as_array().expect("causes");
    assert!(
        causes
            .iter()
            .any(|c| c["field"] == "metadata.name" && c["reason"] == "FieldValueInvalid"),
        "{s}"
    );
    assert_eq!(s["details"]["name"], "Foo_Bar");
    assert_eq!(s["details"]["kind"], "ConfigMap");
    // Namespaces use RFC 1123 labels: a valid subdomain with dots is told so, anything else
    // gets the label message.
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}});
    let s = c
        .send_json("POST", "/api/v1/namespaces", &ns)
        .status(422, "Invalid");
    assert!(
        message(&s).ends_with(r#"metadata.name: Invalid value: "a.b": must not contain dots"#),
        "{s}"
    );
    assert_eq!(c.get("/api/v1/namespaces/a.b").code, 404);
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "Bad_NS"}});
    let s = c
        .send_json("POST", "/api/v1/namespaces", &ns)
        .status(422, "Invalid");
    assert!(
        message(&s).contains("a lowercase RFC 1123 label must consist of"),
        "{s}"
    );
    assert_eq!(c.get("/api/v1/namespaces/Bad_NS").code, 404);
    no_configmap(&c, "Foo_Bar");
    still_serving(&c);
}

#[test]
fn body_over_3_mib_is_413() {
    let (_s, c) = server();
    let big = "x".repeat(3 * 1024 * 1024 + 10);
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"v": big}});
    let s = c
        .send_json("POST", CMS, &body)
        .status(413, "RequestEntityTooLarge");
    assert!(
        message(&s).contains("too large") && message(&s).contains("3145728"),
        "{s}"
    );
    no_configmap(&c, "big");
    still_serving(&c);
    // Just under the limit is read (and then refused by validation for the 1 MiB ConfigMap
    // limit, not by the body limit).
    let under = "x".repeat(2 * 1024 * 1024);
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"v": under}});
    assert_ne!(c.send_json("POST", CMS, &body).code, 413);
    no_configmap(&c, "big");
    still_serving(&c);
}

#[test]
fn unknown_field_strict_is_400_and_warn_is_a_warning() {
    let (_s, c) = server();
    let mut d = deployment("strict");
    d["spec"]["foo"] = json!(1);
    let s = c
        .send_json("POST", &format!("{DEPLOYS}?fieldValidation=Strict"), &d)
        .status(400, "BadRequest");
    assert!(
        message(&s).contains(r#"strict decoding error: unknown field "spec.foo""#),
        "{s}"
    );
    assert_eq!(c.get(&format!("{DEPLOYS}/strict")).code, 404);

    let r = c.send_json("POST", &format!("{DEPLOYS}?fieldValidation=Warn"), &d);
    assert_eq!(r.code, 201, "{}", r.body);
    let warning = r
        .headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("warning:"))
        .unwrap_or_else(|| panic!("no Warning header:\n{}", r.headers));
    assert!(
        warning.contains(r#"299 - "unknown field \"spec.foo\"""#),
        "{warning}"
    );
    // The unknown field was dropped, not stored.
    let stored = c.get(&format!("{DEPLOYS}/strict")).json();
    assert!(stored["spec"].get("foo").is_none(), "{stored}");
    // Ignore: no warning at all.
    d["metadata"]["name"] = json!("ignored");
    let r = c.send_json("POST", &format!("{DEPLOYS}?fieldValidation=Ignore"), &d);
    assert_eq!(r.code, 201, "{}", r.body);
    assert!(
        !r.headers.to_ascii_lowercase().contains("\nwarning:"),
        "{}",
        r.headers
    );
    still_serving(&c);
}

#[test]
fn duplicate_field_strict_is_400() {
    let (_s, c) = server();
    let raw = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup","name":"dup"},"data":{"a":"1"}}"#;
    let s = c
        .request(
            "POST",
            &format!("{CMS}?fieldValidation=Strict"),
            Some("application/json"),
            Some(raw),
        )
        .status(400, "BadRequest");
    assert!(
        message(&s).contains(r#"strict decoding error: duplicate field "metadata.name""#),
        "{s}"
    );
    no_configmap(&c, "dup");
    still_serving(&c);
}

#[test]
fn invalid_label_selector_is_400() {
    let (_s, c) = server();
    let s = c
        .get(&format!("{CMS}?labelSelector=a%20b"))
        .status(400, "BadRequest");
    assert!(
        message(&s).contains("unable to parse requirement") || message(&s).contains("expected"),
        "{s}"
    );
    let s = c
        .get(&format!("{CMS}?labelSelector=a%20in%20(x"))
        .status(400, "BadRequest");
    assert!(!message(&s).is_empty(), "{s}");
    // A watch with the same selector is refused the same way, before streaming.
    c.get(&format!("{CMS}?watch=1&labelSelector=a%20b"))
        .status(400, "BadRequest");
    still_serving(&c);
}

#[test]
fn unsupported_field_selector_is_400() {
    let (_s, c) = server();
    // Kinds with their own field labels (pods) name the unsupported one...
    let s = c
        .get("/api/v1/namespaces/default/pods?fieldSelector=spec.foo%3D1")
        .status(400, "BadRequest");
    assert_eq!(message(&s), "field label not supported: spec.foo");
    // ...and kinds with only the metadata ones say which those are, as upstream's default
    // conversion does.
    let s = c
        .get(&format!("{CMS}?fieldSelector=data.x%3D1"))
        .status(400, "BadRequest");
    assert_eq!(
        message(&s),
        r#""data.x" is not a known field selector: only "metadata.name", "metadata.namespace""#
    );
    // A watch is refused the same way, before streaming.
    c.get(&format!("{CMS}?watch=true&fieldSelector=data.x%3D1"))
        .status(400, "BadRequest");
    still_serving(&c);
}

#[test]
fn no_credentials_is_401() {
    let (_s, c) = server();
    let r = c.request_as(false, "GET", CMS, None, None);
    let s = r.status(401, "Unauthorized");
    assert_eq!(message(&s), "Unauthorized");
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "anon"}});
    let r = c.request_as(
        false,
        "POST",
        CMS,
        Some("application/json"),
        Some(body.to_string().as_bytes()),
    );
    r.status(401, "Unauthorized");
    no_configmap(&c, "anon");
    // Health stays public.
    assert_eq!(c.request_as(false, "GET", "/healthz", None, None).code, 200);
    still_serving(&c);
}

#[test]
fn unknown_resource_is_404() {
    let (_s, c) = server();
    for path in [
        "/api/v1/namespaces/default/widgets",
        "/apis/nope.example.com/v1/things",
        "/api/v2/pods",
    ] {
        let s = c.get(path).status(404, "NotFound");
        assert_eq!(
            message(&s),
            "the server could not find the requested resource",
            "{path}"
        );
    }
    let body = json!({"apiVersion": "v1", "kind": "Widget", "metadata": {"name": "w"}});
    c.send_json("POST", "/api/v1/namespaces/default/widgets", &body)
        .status(404, "NotFound");
    still_serving(&c);
}

#[test]
fn missing_namespace_is_404() {
    let (_s, c) = server();
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "orphan"}});
    let s = c
        .send_json("POST", "/api/v1/namespaces/x/configmaps", &body)
        .status(404, "NotFound");
    assert_eq!(message(&s), r#"namespaces "x" not found"#);
    assert_eq!(s["details"]["name"], "x");
    assert_eq!(s["details"]["kind"], "namespaces");
    let list = c.get("/api/v1/configmaps").json();
    assert!(
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|i| i["metadata"]["name"] != "orphan"),
        "{list}"
    );
    still_serving(&c);
}

#[test]
fn dry_run_create_stores_nothing() {
    let (_s, c) = server();
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry"}, "data": {"a": "1"}});
    let r = c.send_json("POST", &format!("{CMS}?dryRun=All"), &body);
    assert_eq!(r.code, 201, "{}", r.body);
    let obj = r.json();
    assert_eq!(obj["metadata"]["name"], "dry");
    assert_eq!(obj["data"]["a"], "1");
    no_configmap(&c, "dry");
    let s = c
        .send_json("POST", &format!("{CMS}?dryRun=Some"), &body)
        .status(400, "BadRequest");
    assert!(message(&s).contains("dry run"), "{s}");
    no_configmap(&c, "dry");
    still_serving(&c);
}

#[test]
fn apply_patch_is_415() {
    let (_s, c) = server();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1"}});
    assert_eq!(c.send_json("POST", CMS, &cm).code, 201);
    let r = c.request(
        "PATCH",
        &format!("{CMS}/ssa?fieldManager=me"),
        Some("application/apply-patch+yaml"),
        Some(b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: \"2\"\n"),
    );
    let s = r.status(415, "UnsupportedMediaType");
    assert!(message(&s).contains("application/merge-patch+json"), "{s}");
    assert_eq!(c.get(&format!("{CMS}/ssa")).json()["data"]["a"], "1");
    still_serving(&c);
}

#[test]
fn deletecollection_on_namespaces_is_405() {
    let (_s, c) = server();
    let s = c
        .request("DELETE", "/api/v1/namespaces", None, None)
        .status(405, "MethodNotAllowed");
    assert_eq!(
        message(&s),
        "the server does not allow this method on the requested resource"
    );
    assert_eq!(c.get("/api/v1/namespaces/kube-system").code, 200);
    still_serving(&c);
}
