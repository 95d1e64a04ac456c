use serde_json::json;

use super::super::test_support::{cells, columns, meta};

#[test]
fn role_bindings_list_subjects_in_wide_columns() {
    assert_eq!(
        columns("rbac.authorization.k8s.io", "rolebindings"),
        [
            "Name",
            "Role",
            "Age",
            "Users*",
            "Groups*",
            "ServiceAccounts*"
        ]
    );
    let rb = json!({"metadata": meta("read-pods"),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "jane"}, {"kind": "User", "name": "joe"},
            {"kind": "Group", "name": "devs"}, {"kind": "ServiceAccount", "name": "ci", "namespace": "build"}]});
    assert_eq!(
        cells("rbac.authorization.k8s.io", "clusterrolebindings", &rb),
        vec![
            json!("read-pods"),
            json!("ClusterRole/view"),
            json!("60m"),
            json!("jane, joe"),
            json!("devs"),
            json!("build/ci")
        ]
    );
}

#[test]
fn roles_and_clusterroles_use_the_default_table() {
    for resource in ["roles", "clusterroles"] {
        assert_eq!(
            columns("rbac.authorization.k8s.io", resource),
            ["Name", "Created At"]
        );
    }
    let role = json!({"metadata": meta("pod-reader"), "rules": []});
    assert_eq!(
        cells("rbac.authorization.k8s.io", "roles", &role),
        vec![json!("pod-reader"), json!("2024-05-01T11:00:00Z")]
    );
}

#[test]
fn ingress_and_ingress_class_rows() {
    assert_eq!(
        columns("networking.k8s.io", "ingresses"),
        ["Name", "Class", "Hosts", "Address", "Ports", "Age"]
    );
    let ing = json!({"metadata": meta("web"), "spec": {"ingressClassName": "nginx",
        "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}, {}, {"host": "c.example.com"}, {"host": "d.example.com"}],
        "tls": [{"hosts": ["a.example.com"]}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "lb.example.com"}]}}});
    assert_eq!(
        cells("networking.k8s.io", "ingresses", &ing),
        vec![
            json!("web"),
            json!("nginx"),
            json!("a.example.com,b.example.com,c.example.com + 2 more..."),
            json!("203.0.113.7,lb.example.com"),
            json!("80, 443"),
            json!("60m")
        ]
    );
    let exactly_three = json!({"metadata": meta("w"), "spec": {
        "rules": [{"host": "a.example.com"}, {}, {"host": "b.example.com"}, {"host": "c.example.com"}]}});
    assert_eq!(
        cells("networking.k8s.io", "ingresses", &exactly_three)[2],
        "a.example.com,b.example.com,c.example.com"
    );
    let bare = json!({"metadata": meta("any"), "spec": {"defaultBackend": {}}});
    let c = cells("networking.k8s.io", "ingresses", &bare);
    assert_eq!(
        (&c[1], &c[2], &c[3], &c[4]),
        (&json!("<none>"), &json!("*"), &json!(""), &json!("80"))
    );

    let ic = json!({"metadata": meta("nginx"), "spec": {"controller": "k8s.io/ingress-nginx",
        "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"}}});
    assert_eq!(
        cells("networking.k8s.io", "ingressclasses", &ic),
        vec![
            json!("nginx"),
            json!("k8s.io/ingress-nginx"),
            json!("IngressParameters.k8s.example.com/external-lb"),
            json!("60m")
        ]
    );
}

#[test]
fn network_policy_service_cidr_and_ip_address_rows() {
    let np = json!({"metadata": meta("deny-all"), "spec": {"podSelector": {}}});
    assert_eq!(
        cells("networking.k8s.io", "networkpolicies", &np),
        vec![json!("deny-all"), json!("<none>"), json!("60m")]
    );
    let cidr =
        json!({"metadata": meta("kubernetes"), "spec": {"cidrs": ["10.96.0.0/16", "fd00::/108"]}});
    assert_eq!(
        cells("networking.k8s.io", "servicecidrs", &cidr),
        vec![
            json!("kubernetes"),
            json!("10.96.0.0/16,fd00::/108"),
            json!("60m")
        ]
    );
    let ip = json!({"metadata": meta("10.96.0.1"), "spec": {"parentRef": {"group": "", "resource": "services",
        "namespace": "default", "name": "kubernetes"}}});
    assert_eq!(
        cells("networking.k8s.io", "ipaddresses", &ip),
        vec![json!("10.96.0.1"), json!("services/default/kubernetes")]
    );
}

#[test]
fn lease_priority_class_runtime_class_rows() {
    let lease = json!({"metadata": meta("node-1"), "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40}});
    assert_eq!(
        cells("coordination.k8s.io", "leases", &lease),
        vec![json!("node-1"), json!("node-1"), json!("60m")]
    );
    assert_eq!(
        columns("scheduling.k8s.io", "priorityclasses"),
        ["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"]
    );
    let pc = json!({"metadata": meta("system-node-critical"), "value": 2000001000, "preemptionPolicy": "PreemptLowerPriority"});
    assert_eq!(
        cells("scheduling.k8s.io", "priorityclasses", &pc),
        vec![
            json!("system-node-critical"),
            json!(2000001000),
            json!(false),
            json!("60m"),
            json!("PreemptLowerPriority")
        ]
    );
    let rc = json!({"metadata": meta("gvisor"), "handler": "runsc"});
    assert_eq!(
        cells("node.k8s.io", "runtimeclasses", &rc),
        vec![json!("gvisor"), json!("runsc"), json!("60m")]
    );
}

#[test]
fn admission_configuration_rows() {
    let wh = json!({"metadata": meta("hooks"), "webhooks": [{"name": "a"}, {"name": "b"}]});
    assert_eq!(
        cells(
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            &wh
        ),
        vec![json!("hooks"), json!(2), json!("60m")]
    );
    let vap = json!({"metadata": meta("policy"), "spec": {"validations": [{"expression": "true"}],
        "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"}}});
    assert_eq!(
        cells(
            "admissionregistration.k8s.io",
            "validatingadmissionpolicies",
            &vap
        ),
        vec![
            json!("policy"),
            json!(1),
            json!("v1/ConfigMap"),
            json!("60m")
        ]
    );
    let binding = json!({"metadata": meta("b"), "spec": {"policyName": "policy", "paramRef": {"name": "cfg"}}});
    assert_eq!(
        cells(
            "admissionregistration.k8s.io",
            "validatingadmissionpolicybindings",
            &binding
        ),
        vec![json!("b"), json!("policy"), json!("*/cfg"), json!("60m")]
    );
}

#[test]
fn certificate_signing_request_row() {
    let csr = json!({"metadata": meta("node-csr-abc"), "spec": {"signerName": "kubernetes.io/kube-apiserver-client-kubelet",
        "username": "system:node:node-1", "expirationSeconds": 86400, "request": "LS0t"},
        "status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "LS0t"}});
    assert_eq!(
        cells("certificates.k8s.io", "certificatesigningrequests", &csr),
        vec![
            json!("node-csr-abc"),
            json!("60m"),
            json!("kubernetes.io/kube-apiserver-client-kubelet"),
            json!("system:node:node-1"),
            json!("24h"),
            json!("Approved,Issued")
        ]
    );
}

#[test]
fn flowcontrol_and_api_service_rows() {
    let fs = json!({"metadata": meta("exempt"), "spec": {"priorityLevelConfiguration": {"name": "exempt"},
        "matchingPrecedence": 1}, "status": {"conditions": [{"type": "Dangling", "status": "False"}]}});
    assert_eq!(
        cells("flowcontrol.apiserver.k8s.io", "flowschemas", &fs),
        vec![
            json!("exempt"),
            json!("exempt"),
            json!(1),
            json!("<none>"),
            json!("60m"),
            json!("False")
        ]
    );
    let pl = json!({"metadata": meta("workload-low"), "spec": {"type": "Limited", "limited": {
        "nominalConcurrencyShares": 100, "limitResponse": {"type": "Queue",
            "queuing": {"queues": 128, "handSize": 6, "queueLengthLimit": 50}}}}});
    assert_eq!(
        cells(
            "flowcontrol.apiserver.k8s.io",
            "prioritylevelconfigurations",
            &pl
        ),
        vec![
            json!("workload-low"),
            json!("Limited"),
            json!(100),
            json!(128),
            json!(6),
            json!(50),
            json!("60m")
        ]
    );
    let exempt = json!({"metadata": meta("exempt"), "spec": {"type": "Exempt"}});
    assert_eq!(
        cells(
            "flowcontrol.apiserver.k8s.io",
            "prioritylevelconfigurations",
            &exempt
        )[2],
        "<none>"
    );

    let local = json!({"metadata": meta("v1.apps"), "spec": {"group": "apps", "version": "v1"},
        "status": {"conditions": [{"type": "Available", "status": "True", "reason": "Local"}]}});
    assert_eq!(
        cells("apiregistration.k8s.io", "apiservices", &local),
        vec![
            json!("v1.apps"),
            json!("Local"),
            json!("True"),
            json!("60m")
        ]
    );
    let remote = json!({"metadata": meta("v1beta1.metrics.k8s.io"),
        "spec": {"service": {"namespace": "kube-system", "name": "metrics-server"}},
        "status": {"conditions": [{"type": "Available", "status": "False", "reason": "MissingEndpoints"}]}});
    let c = cells("apiregistration.k8s.io", "apiservices", &remote);
    assert_eq!(
        (&c[1], &c[2]),
        (
            &json!("kube-system/metrics-server"),
            &json!("False (MissingEndpoints)")
        )
    );
}
