//! Endpoints controller unit tests: seed caches, reconcile once, assert the written object.

use super::*;
use crate::writes::{RecordingWrites, store_of};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub(crate) fn at(secs: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_700_000_000 + secs).expect("valid time")
}

pub(crate) fn service(publish_not_ready: bool) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("svc-uid".into()),
            creation_timestamp: Some(Time(at(0))),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: Some([("app".to_string(), "web".to_string())].into()),
            ports: Some(vec![ServicePort {
                name: Some("www".into()),
                port: 80,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            publish_not_ready_addresses: Some(publish_not_ready),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// A pod of app `web` on `node` with `ip`, its `http` port at `port`.
pub(crate) fn pod(name: &str, ip: &str, port: i32, ready: bool, node: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            labels: Some([("app".to_string(), "web".to_string())].into()),
            creation_timestamp: Some(Time(at(1))),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            containers: vec![Container {
                name: "app".into(),
                ports: Some(vec![ContainerPort {
                    name: Some("http".into()),
                    container_port: port,
                    protocol: Some("TCP".into()),
                    ..ContainerPort::default()
                }]),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(ip.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: Some(Time(at(5))),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
    }
}

fn controller(
    svcs: Vec<Service>,
    pods: Vec<Pod>,
    eps: Vec<Endpoints>,
) -> EndpointsController<RecordingWrites> {
    EndpointsController {
        writes: Arc::new(RecordingWrites::new()),
        services: store_of(svcs),
        pods: store_of(pods),
        endpoints: store_of(eps),
    }
}

fn key() -> Key {
    Key::new("default", "web")
}

fn ips(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["ip"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn ready_and_not_ready_pods_are_listed_with_named_ports_resolved_per_pod() {
    let mut other = pod("c", "10.0.0.9", 9090, true, "n2");
    other.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
    let mut terminating = pod("d", "10.0.0.4", 8080, true, "n1");
    terminating.metadata.deletion_timestamp = Some(Time(at(9)));
    let c = controller(
        vec![service(false)],
        vec![
            pod("b", "10.0.0.2", 8080, true, "n1"),
            pod("a", "10.0.0.3", 8080, false, "n2"),
            pod("e", "10.0.0.5", 9000, true, "n2"),
            other,
            terminating,
        ],
        vec![],
    );
    c.reconcile(&key()).await.expect("sync");
    let w = c.writes.objects();
    assert_eq!(w.len(), 1);
    assert_eq!((w[0].verb, w[0].kind), ("create", Some(Kind::Endpoints)));
    let ep = &w[0].body;
    assert_eq!(ep["metadata"]["name"], "web");
    assert_eq!(
        ep["metadata"]["annotations"][TRIGGER_TIME_ANNOTATION],
        rfc3339_nano(at(9)),
        "the latest change: the terminating pod's deletion"
    );
    let subsets = ep["subsets"].as_array().expect("subsets");
    // Pods whose `http` port differs land in different subsets.
    assert_eq!(subsets.len(), 2, "{ep}");
    let on_8080 = subsets
        .iter()
        .find(|s| s["ports"][0]["port"] == 8080)
        .expect("8080 subset");
    assert_eq!(on_8080["ports"][0]["name"], "www");
    assert_eq!(on_8080["ports"][0]["protocol"], "TCP");
    assert_eq!(ips(&on_8080["addresses"]), ["10.0.0.2"]);
    assert_eq!(ips(&on_8080["notReadyAddresses"]), ["10.0.0.3"]);
    let addr = &on_8080["addresses"][0];
    assert_eq!(addr["nodeName"], "n1");
    assert_eq!(addr["targetRef"]["kind"], "Pod");
    assert_eq!(addr["targetRef"]["name"], "b");
    assert_eq!(addr["targetRef"]["uid"], "uid-b");
    let on_9000 = subsets
        .iter()
        .find(|s| s["ports"][0]["port"] == 9000)
        .expect("9000 subset");
    assert_eq!(ips(&on_9000["addresses"]), ["10.0.0.5"]);
}

#[tokio::test]
async fn publish_not_ready_addresses_lists_every_pod_as_ready() {
    let c = controller(
        vec![service(true)],
        vec![
            pod("a", "10.0.0.3", 8080, false, "n1"),
            pod("b", "10.0.0.2", 8080, true, "n1"),
        ],
        vec![],
    );
    c.reconcile(&key()).await.expect("sync");
    let ep = &c.writes.objects()[0].body;
    assert_eq!(
        ips(&ep["subsets"][0]["addresses"]),
        ["10.0.0.2", "10.0.0.3"]
    );
    assert!(ep["subsets"][0]["notReadyAddresses"].is_null());
}

#[tokio::test]
async fn unchanged_endpoints_are_not_rewritten_and_changes_replace_them() {
    let svc = service(false);
    let pods = vec![pod("b", "10.0.0.2", 8080, true, "n1")];
    let arcs: Vec<Arc<Pod>> = pods.iter().cloned().map(Arc::new).collect();
    let current = Endpoints {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            resource_version: Some("7".into()),
            labels: Some(BTreeMap::new()),
            ..ObjectMeta::default()
        },
        subsets: Some(desired_subsets(&svc, &arcs)),
    };
    let c = controller(vec![svc.clone()], pods, vec![current.clone()]);
    c.reconcile(&key()).await.expect("sync");
    assert!(c.writes.objects().is_empty(), "nothing changed");

    let c = controller(
        vec![svc],
        vec![
            pod("b", "10.0.0.2", 8080, true, "n1"),
            pod("c", "10.0.0.7", 8080, true, "n1"),
        ],
        vec![current],
    );
    c.reconcile(&key()).await.expect("sync");
    let w = c.writes.objects();
    assert_eq!((w[0].verb, w[0].name.as_str()), ("replace", "web"));
    assert_eq!(w[0].body["metadata"]["resourceVersion"], "7");
    assert_eq!(
        ips(&w[0].body["subsets"][0]["addresses"]),
        ["10.0.0.2", "10.0.0.7"]
    );
}

#[tokio::test]
async fn services_without_a_selector_are_left_alone_and_deleted_services_lose_their_endpoints() {
    let mut manual = service(false);
    manual.spec.as_mut().expect("spec").selector = None;
    let existing = Endpoints {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("ep-uid".into()),
            ..ObjectMeta::default()
        },
        subsets: None,
    };
    let c = controller(
        vec![manual],
        vec![pod("b", "10.0.0.2", 8080, true, "n1")],
        vec![existing.clone()],
    );
    c.reconcile(&key()).await.expect("sync");
    assert!(c.writes.objects().is_empty());

    let c = controller(vec![], vec![], vec![existing]);
    c.reconcile(&key()).await.expect("sync");
    let w = c.writes.objects();
    assert_eq!((w[0].verb, w[0].kind), ("delete", Some(Kind::Endpoints)));
}
