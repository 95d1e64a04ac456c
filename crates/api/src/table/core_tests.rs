use serde_json::{Value, json};

use crate::table::column_definitions;

use super::super::test_support::{cells, columns};

fn node() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-1", "creationTimestamp": "2024-04-21T12:00:00Z",
            "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": "true",
                "kubernetes.io/role": "master", "node-role.kubernetes.io/": "", "kubernetes.io/hostname": "node-1"}},
        "spec": {"unschedulable": true, "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True", "reason": "KubeletReady"}
            ],
            "addresses": [{"type": "Hostname", "address": "node-1"}, {"type": "InternalIP", "address": "192.168.1.10"}],
            "nodeInfo": {"kubeletVersion": "v1.33.1", "osImage": "Debian GNU/Linux 12 (bookworm)",
                "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": ""}
        }
    })
}

#[test]
fn cordoned_node_row() {
    assert_eq!(
        columns("", "nodes"),
        [
            "Name",
            "Status",
            "Roles",
            "Age",
            "Version",
            "Internal-IP*",
            "External-IP*",
            "OS-Image*",
            "Kernel-Version*",
            "Container-Runtime*"
        ]
    );
    assert_eq!(
        cells("", "nodes", &node()),
        vec![
            json!("node-1"),
            json!("Ready,SchedulingDisabled"),
            json!("control-plane,master,worker"),
            json!("10d"),
            json!("v1.33.1"),
            json!("192.168.1.10"),
            json!("<none>"),
            json!("Debian GNU/Linux 12 (bookworm)"),
            json!("6.1.0-18-amd64"),
            json!("<unknown>")
        ]
    );
}

#[test]
fn node_status_not_ready_and_unknown() {
    let mut n = node();
    n["spec"] = json!({});
    n["status"]["conditions"] = json!([{"type": "Ready", "status": "Unknown"}]);
    assert_eq!(cells("", "nodes", &n)[1], "NotReady");
    n["status"]["conditions"] = json!([]);
    n["metadata"]["labels"] = json!({});
    let c = cells("", "nodes", &n);
    assert_eq!((&c[1], &c[2]), (&json!("Unknown"), &json!("<none>")));
}

fn service(spec: Value, status: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2024-05-01T11:59:15Z"},
        "spec": spec, "status": status})
}

#[test]
fn nodeport_service_row() {
    assert_eq!(
        columns("", "services"),
        [
            "Name",
            "Type",
            "Cluster-IP",
            "External-IP",
            "Port(s)",
            "Age",
            "Selector*"
        ]
    );
    let svc = service(
        json!({"type": "NodePort", "clusterIP": "10.96.12.34", "clusterIPs": ["10.96.12.34"],
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 31053}]}),
        json!({"loadBalancer": {}}),
    );
    assert_eq!(
        cells("", "services", &svc),
        vec![
            json!("web"),
            json!("NodePort"),
            json!("10.96.12.34"),
            json!("<none>"),
            json!("80:30080/TCP,53:31053/UDP"),
            json!("45s"),
            json!("app=web")
        ]
    );
}

#[test]
fn service_external_ip_by_type() {
    let headless = service(
        json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 5432, "protocol": "TCP"}]}),
        json!({}),
    );
    let c = cells("", "services", &headless);
    assert_eq!(
        (&c[2], &c[3], &c[4], &c[6]),
        (
            &json!("None"),
            &json!("<none>"),
            &json!("5432/TCP"),
            &json!("<none>")
        )
    );

    let pending = service(
        json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.9"], "ports": []}),
        json!({}),
    );
    let c = cells("", "services", &pending);
    assert_eq!((&c[3], &c[4]), (&json!("<pending>"), &json!("<none>")));

    let lb = service(
        json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.9"], "externalIPs": ["1.2.3.4"]}),
        json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}, {"hostname": "lb.example.com"}, {"ip": "203.0.113.1"}]}}),
    );
    assert_eq!(
        cells("", "services", &lb)[3],
        "203.0.113.1,203.0.113.9,lb.example.com,1.2.3.4"
    );

    let external = service(
        json!({"type": "ExternalName", "externalName": "db.example.com"}),
        json!({}),
    );
    let c = cells("", "services", &external);
    assert_eq!((&c[2], &c[3]), (&json!("<none>"), &json!("db.example.com")));
}

#[test]
fn endpoints_list_ready_addresses_with_more_suffix() {
    assert_eq!(columns("", "endpoints"), ["Name", "Endpoints", "Age"]);
    let ep = json!({"metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:00:00Z"},
    "subsets": [{
        "addresses": [{"ip": "10.244.0.5"}, {"ip": "10.244.1.7"}],
        "notReadyAddresses": [{"ip": "10.244.2.2"}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "metrics", "port": 9090, "protocol": "TCP"}]
    }]});
    assert_eq!(
        cells("", "endpoints", &ep),
        vec![
            json!("web"),
            json!("10.244.0.5:8080,10.244.1.7:8080,10.244.0.5:9090 + 1 more..."),
            json!("60m")
        ]
    );
    let none = json!({"metadata": {"name": "empty"}});
    assert_eq!(cells("", "endpoints", &none)[1], "<none>");
    let headless =
        json!({"metadata": {"name": "h"}, "subsets": [{"addresses": [{"ip": "fd00::5"}]}]});
    assert_eq!(cells("", "endpoints", &headless)[1], "fd00::5");
    let v6 = json!({"metadata": {"name": "h"}, "subsets": [{"addresses": [{"ip": "fd00::5"}], "ports": [{"port": 80}]}]});
    assert_eq!(cells("", "endpoints", &v6)[1], "[fd00::5]:80");
}

#[test]
fn endpointslice_ports_and_endpoints() {
    assert_eq!(
        columns("discovery.k8s.io", "endpointslices"),
        ["Name", "AddressType", "Ports", "Endpoints", "Age"]
    );
    let slice = json!({"metadata": {"name": "web-abcde", "creationTimestamp": "2024-05-01T11:59:00Z"},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "named"}, {}],
        "endpoints": [{"addresses": ["10.244.0.5"]}, {"addresses": ["10.244.1.7"]}, {"addresses": ["10.244.1.8"]}, {"addresses": ["10.244.1.9"]}]});
    assert_eq!(
        cells("discovery.k8s.io", "endpointslices", &slice),
        vec![
            json!("web-abcde"),
            json!("IPv4"),
            json!("8080,named,*"),
            json!("10.244.0.5,10.244.1.7,10.244.1.8 + 1 more..."),
            json!("60s")
        ]
    );
    let empty = json!({"metadata": {"name": "e"}, "addressType": "IPv4"});
    let c = cells("discovery.k8s.io", "endpointslices", &empty);
    assert_eq!((&c[2], &c[3]), (&json!("<unset>"), &json!("<unset>")));
}

#[test]
fn namespace_configmap_secret_serviceaccount_rows() {
    let ns = json!({"metadata": {"name": "kube-system", "creationTimestamp": "2024-05-01T11:59:55Z"}, "status": {"phase": "Active"}});
    assert_eq!(
        cells("", "namespaces", &ns),
        vec![json!("kube-system"), json!("Active"), json!("5s")]
    );

    let cm = json!({"metadata": {"name": "cfg", "creationTimestamp": "2024-05-01T11:00:00Z"},
        "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AAE="}});
    assert_eq!(columns("", "configmaps"), ["Name", "Data", "Age"]);
    assert_eq!(
        cells("", "configmaps", &cm),
        vec![json!("cfg"), json!(3), json!("60m")]
    );

    let secret = json!({"metadata": {"name": "tls", "creationTimestamp": "2024-05-01T11:00:00Z"},
        "type": "kubernetes.io/tls", "data": {"tls.crt": "Zm9v", "tls.key": "YmFy"}});
    assert_eq!(
        cells("", "secrets", &secret),
        vec![
            json!("tls"),
            json!("kubernetes.io/tls"),
            json!(2),
            json!("60m")
        ]
    );

    let sa = json!({"metadata": {"name": "default", "creationTimestamp": "2024-05-01T11:00:00Z"}});
    assert_eq!(columns("", "serviceaccounts"), ["Name", "Secrets", "Age"]);
    assert_eq!(
        cells("", "serviceaccounts", &sa),
        vec![json!("default"), json!(0), json!("60m")]
    );
}

#[test]
fn core_event_row_with_wide_columns() {
    assert_eq!(
        columns("", "events"),
        [
            "Last Seen",
            "Type",
            "Reason",
            "Object",
            "Subobject*",
            "Source*",
            "Message",
            "First Seen*",
            "Count*",
            "Name*"
        ]
    );
    assert_eq!(column_definitions("", "events")[9]["format"], "name");
    let ev = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "web-0.17c9a", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web-0", "namespace": "default", "fieldPath": "spec.containers{app}"},
        "reason": "BackOff", "message": "Back-off restarting failed container\n", "type": "Warning",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": "2024-05-01T11:50:00Z", "lastTimestamp": "2024-05-01T11:59:00Z", "count": 42
    });
    assert_eq!(
        cells("", "events", &ev),
        vec![
            json!("60s"),
            json!("Warning"),
            json!("BackOff"),
            json!("pod/web-0"),
            json!("spec.containers{app}"),
            json!("kubelet, node-1"),
            json!("Back-off restarting failed container"),
            json!("10m"),
            json!(42),
            json!("web-0.17c9a")
        ]
    );
}

#[test]
fn new_style_events_use_event_time_series_and_reporting_controller() {
    let ev = json!({
        "metadata": {"name": "e1"},
        "involvedObject": {"kind": "Node", "name": ""},
        "eventTime": "2024-05-01T11:58:00.123456Z",
        "series": {"count": 5, "lastObservedTime": "2024-05-01T11:59:30.000000Z"},
        "reportingComponent": "scheduler", "reportingInstance": "",
        "reason": "Scheduled", "type": "Normal", "message": "ok"
    });
    let c = cells("", "events", &ev);
    assert_eq!(
        (&c[0], &c[3], &c[5], &c[7], &c[8]),
        (
            &json!("30s"),
            &json!("node"),
            &json!("scheduler"),
            &json!("119s"),
            &json!(5)
        )
    );

    let singleton = json!({"metadata": {"name": "e2"}, "involvedObject": {"kind": "Pod", "name": "p"},
        "eventTime": "2024-05-01T11:58:00.000000Z"});
    let c = cells("", "events", &singleton);
    assert_eq!(
        (&c[0], &c[7], &c[8]),
        (&json!("2m"), &json!("2m"), &json!(1))
    );
}

#[test]
fn events_k8s_io_events_share_the_core_printer() {
    assert_eq!(
        column_definitions("events.k8s.io", "events"),
        column_definitions("", "events")
    );
    let ev = json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web-0.17c9a", "namespace": "default"},
        "regarding": {"kind": "Pod", "name": "web-0", "fieldPath": "spec.containers{app}"},
        "reason": "Pulled", "note": "Successfully pulled image", "type": "Normal",
        "reportingController": "kubelet", "reportingInstance": "node-1",
        "eventTime": null,
        "deprecatedSource": {"component": "kubelet", "host": "node-1"},
        "deprecatedFirstTimestamp": "2024-05-01T11:50:00Z", "deprecatedLastTimestamp": "2024-05-01T11:55:00Z",
        "deprecatedCount": 2
    });
    assert_eq!(
        cells("events.k8s.io", "events", &ev),
        vec![
            json!("5m"),
            json!("Normal"),
            json!("Pulled"),
            json!("pod/web-0"),
            json!("spec.containers{app}"),
            json!("kubelet, node-1"),
            json!("Successfully pulled image"),
            json!("10m"),
            json!(2),
            json!("web-0.17c9a")
        ]
    );
}

#[test]
fn persistent_volume_and_claim_rows() {
    assert_eq!(
        columns("", "persistentvolumes"),
        [
            "Name",
            "Capacity",
            "Access Modes",
            "Reclaim Policy",
            "Status",
            "Claim",
            "StorageClass",
            "VolumeAttributesClass",
            "Reason",
            "Age",
            "VolumeMode*"
        ]
    );
    let pv = json!({"metadata": {"name": "pv-1", "creationTimestamp": "2024-05-01T11:00:00Z"},
        "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain",
            "claimRef": {"namespace": "default", "name": "data"}, "storageClassName": "standard", "volumeMode": "Filesystem"},
        "status": {"phase": "Bound"}});
    assert_eq!(
        cells("", "persistentvolumes", &pv),
        vec![
            json!("pv-1"),
            json!("10Gi"),
            json!("RWO"),
            json!("Retain"),
            json!("Bound"),
            json!("default/data"),
            json!("standard"),
            json!("<unset>"),
            json!(""),
            json!("60m"),
            json!("Filesystem")
        ]
    );

    assert_eq!(
        columns("", "persistentvolumeclaims"),
        [
            "Name",
            "Status",
            "Volume",
            "Capacity",
            "Access Modes",
            "StorageClass",
            "VolumeAttributesClass",
            "Age",
            "VolumeMode*"
        ]
    );
    let pending = json!({"metadata": {"name": "data", "creationTimestamp": "2024-05-01T11:59:00Z",
            "annotations": {"volume.beta.kubernetes.io/storage-class": "legacy"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "standard"},
        "status": {"phase": "Pending"}});
    assert_eq!(
        cells("", "persistentvolumeclaims", &pending),
        vec![
            json!("data"),
            json!("Pending"),
            json!(""),
            json!(""),
            json!(""),
            json!("legacy"),
            json!("<unset>"),
            json!("60s"),
            json!("<unset>")
        ]
    );
    let mut bound = pending.clone();
    bound["metadata"]["annotations"] = json!({});
    bound["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:59:59Z");
    bound["spec"]["volumeName"] = json!("pv-1");
    bound["status"] = json!({"phase": "Bound", "accessModes": ["ReadWriteOnce", "ReadOnlyMany"], "capacity": {"storage": "10Gi"}});
    let c = cells("", "persistentvolumeclaims", &bound);
    assert_eq!(
        (&c[1], &c[2], &c[3], &c[4], &c[5]),
        (
            &json!("Terminating"),
            &json!("pv-1"),
            &json!("10Gi"),
            &json!("RWO,ROX"),
            &json!("standard")
        )
    );
}

#[test]
fn resource_quota_splits_requests_and_limits() {
    assert_eq!(
        columns("", "resourcequotas"),
        ["Name", "Request", "Limit", "Age"]
    );
    let q = json!({"metadata": {"name": "compute", "creationTimestamp": "2024-05-01T11:00:00Z"},
        "status": {"hard": {"requests.cpu": "1", "pods": "10", "limits.memory": "2Gi", "limits.cpu": "2"},
            "used": {"requests.cpu": "500m", "pods": "3", "limits.cpu": "1"}}});
    assert_eq!(
        cells("", "resourcequotas", &q),
        vec![
            json!("compute"),
            json!("pods: 3/10, requests.cpu: 500m/1"),
            json!("limits.cpu: 1/2, limits.memory: 0/2Gi"),
            json!("60m")
        ]
    );
}

#[test]
fn component_status_row() {
    let cs = json!({"metadata": {"name": "etcd-0"}, "conditions": [{"type": "Healthy", "status": "True", "message": "ok"}]});
    assert_eq!(
        cells("", "componentstatuses", &cs),
        vec![json!("etcd-0"), json!("Healthy"), json!("ok"), json!("")]
    );
}
