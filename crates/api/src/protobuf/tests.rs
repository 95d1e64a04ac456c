//! Tests of the protobuf decoder: real kubectl 1.32 bodies, k8s-pb-encoded objects, errors.

use serde_json::{Value, json};

use super::*;

/// A body captured from `kubectl.1.32 create ...` and the JSON `--dry-run=client -o json`
/// printed for the same command.
macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!("../../tests/fixtures/protobuf/", $name, ".bin")).as_slice(),
            include_str!(concat!("../../tests/fixtures/protobuf/", $name, ".json")),
        )
    };
}

#[test]
fn real_kubectl_create_bodies_decode_to_the_dry_run_json() {
    let fixtures = [
        fixture!("namespace"),
        fixture!("deployment"),
        fixture!("deployment-ports"),
        fixture!("configmap"),
        fixture!("secret"),
        fixture!("secret-tls-like"),
        fixture!("service"),
        fixture!("service-nodeport"),
        fixture!("job"),
        fixture!("cronjob"),
        fixture!("serviceaccount"),
        fixture!("role"),
        fixture!("rolebinding"),
        fixture!("clusterrole"),
        fixture!("clusterrolebinding"),
        fixture!("priorityclass"),
        fixture!("pdb"),
        fixture!("quota"),
        fixture!("ingress"),
    ];
    let mut failures = Vec::new();
    for (name, body, expected) in fixtures {
        let expected: Value = serde_json::from_str(expected).expect("fixture JSON parses");
        match decode(body) {
            Ok(actual) if actual == expected => {}
            Ok(actual) => failures.push(format!(
                "{name}:\n got {}\nwant {}",
                serde_json::to_string(&actual).expect("json"),
                serde_json::to_string(&expected).expect("json")
            )),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
