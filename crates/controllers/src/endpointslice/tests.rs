//! EndpointSlice controller unit tests: seed caches, reconcile once, assert the slices written.

use super::*;
use crate::endpoints::tests::{pod, service};
use crate::writes::{RecordingWrites, store_of};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn node(name: &str, zone: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([(ZONE_LABEL.to_string(), zone.to_string())].into()),
            ..ObjectMeta::default()
        },
        ..Node::default()
    }
}

fn controller(
    pods: Vec<Pod>,
    slices: Vec<EndpointSlice>,
) -> EndpointSliceController<RecordingWrites> {
    EndpointSliceController {
        writes: Arc::new(RecordingWrites::new()),
        services: store_of(vec![service(false)]),
        pods: store_of(pods),
        nodes: store_of(vec![node("n1", "zone-a"), node("n2", "zone-b")]),
        slices: store_of(slices),
        pending: Default::default(),
    }
}

fn key() -> Key {
    Key::new("default", "web")
}

#[tokio::test]
async fn a_service_gets_an_owned_slice_with_conditions_zones_and_resolved_ports() {
    let mut leaving = pod("c", "10.0.0.4", 8080, true, "n2");
    leaving.metadata.deletion_timestamp = Some(Time(crate::endpoints::tests::at(9)));
    let c = controller(
        vec![
            pod("a", "10.0.0.3", 8080, false, "n2"),
            pod("b", "10.0.0.2", 8080, true, "n1"),
            leaving,
        ],
        vec![],
    );
    c.reconcile(&key()).await.expect("sync");
    let w = c.writes.objects();
    assert_eq!(w.len(), 1);
    assert_eq!(
        (w[0].verb, w[0].kind),
        ("create", Some(Kind::EndpointSlice))
    );
    let s = &w[0].body;
    assert_eq!(s["metadata"]["generateName"], "web-");
    assert_eq!(s["metadata"]["labels"][SERVICE_NAME_LABEL], "web");
    assert_eq!(s["metadata"]["labels"][MANAGED_BY_LABEL], MANAGED_BY);
    let owner = &s["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            &owner["kind"],
            &owner["name"],
            &owner["uid"],
            &owner["controller"]
        ),
        (
            &json!("Service"),
            &json!("web"),
            &json!("svc-uid"),
            &json!(true)
        )
    );
    assert_eq!(s["addressType"], "IPv4");
    assert_eq!(
        s["ports"],
        json!([{"name": "www", "port": 8080, "protocol": "TCP"}])
    );
    let eps = s["endpoints"].as_array().expect("endpoints");
    assert_eq!(eps.len(), 3);
    assert_eq!(eps[0]["addresses"], json!(["10.0.0.2"]));
    assert_eq!(
        eps[0]["conditions"],
        json!({"ready": true, "serving": true, "terminating": false})
    );
    assert_eq!(eps[0]["nodeName"], "n1");
    assert_eq!(eps[0]["zone"], "zone-a");
    assert_eq!(eps[0]["targetRef"]["name"], "b");
    assert_eq!(
        eps[1]["conditions"],
        json!({"ready": false, "serving": false, "terminating": false})
    );
    // A terminating pod still serves but is no longer ready.
    assert_eq!(
        eps[2]["conditions"],
        json!({"ready": false, "serving": true, "terminating": true})
    );
}

#[tokio::test]
async fn more_than_100_endpoints_are_split_and_surplus_slices_deleted() {
    let pods: Vec<Pod> = (0..150)
        .map(|i| {
            pod(
                &format!("p{i:03}"),
                &format!("10.1.{}.{}", i / 200, i % 200 + 1),
                8080,
                true,
                "n1",
            )
        })
        .collect();
    let c = controller(pods, vec![]);
    c.reconcile(&key()).await.expect("sync");
    let w = c.writes.objects();
    let sizes: Vec<usize> = w
        .iter()
        .map(|w| w.body["endpoints"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(sizes, [100, 50]);

    // Both slices now exist; with the pods gone, one empty placeholder stays and one goes.
    let stored: Vec<EndpointSlice> = w
        .iter()
        .map(|w| serde_json::from_value(w.body.clone()).expect("slice"))
        .collect();
    let c = controller(vec![], stored);
    c.reconcile(&key()).await.expect("sync");
    let verbs: Vec<&str> = c.writes.objects().iter().map(|w| w.verb).collect();
    assert_eq!(verbs, ["replace", "delete"]);
    assert_eq!(c.writes.objects()[0].body["endpoints"], json!([]));
}

#[tokio::test]
async fn an_up_to_date_slice_is_left_alone_and_a_stale_cache_waits() {
    let pods = vec![pod("b", "10.0.0.2", 8080, true, "n1")];
    let c = controller(pods.clone(), vec![]);
    c.reconcile(&key()).await.expect("sync");
    let created: EndpointSlice =
        serde_json::from_value(c.writes.objects()[0].body.clone()).expect("slice");
    // The cache has not shown the new slice yet: no second create.
    let again = c.reconcile(&key()).await.expect("sync");
    assert!(again.is_some(), "requeued while the cache catches up");
    assert_eq!(c.writes.objects().len(), 1);

    let c = controller(pods, vec![created]);
    c.reconcile(&key()).await.expect("sync");
    assert!(c.writes.objects().is_empty());
}
