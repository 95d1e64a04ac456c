use serde_json::json;

use crate::table::column_definitions;

use super::super::test_support::{cells, columns, meta};

#[test]
fn default_storage_class_is_marked_and_defaults_are_filled() {
    assert_eq!(
        columns("storage.k8s.io", "storageclasses"),
        [
            "Name",
            "Provisioner",
            "ReclaimPolicy",
            "VolumeBindingMode",
            "AllowVolumeExpansion",
            "Age"
        ]
    );
    let mut m = meta("standard");
    m["annotations"] = json!({"storageclass.kubernetes.io/is-default-class": "true"});
    let sc = json!({"metadata": m, "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"});
    assert_eq!(
        cells("storage.k8s.io", "storageclasses", &sc),
        vec![
            json!("standard (default)"),
            json!("rancher.io/local-path"),
            json!("Delete"),
            json!("WaitForFirstConsumer"),
            json!(false),
            json!("60m")
        ]
    );
}

#[test]
fn csi_driver_node_attachment_and_capacity_rows() {
    let d = json!({"metadata": meta("ebs.csi.aws.com"), "spec": {"podInfoOnMount": true,
        "volumeLifecycleModes": ["Persistent", "Ephemeral"], "tokenRequests": [{"audience": "sts"}]}});
    assert_eq!(
        cells("storage.k8s.io", "csidrivers", &d),
        vec![
            json!("ebs.csi.aws.com"),
            json!(true),
            json!(true),
            json!(false),
            json!("sts"),
            json!(false),
            json!("Persistent,Ephemeral"),
            json!("60m")
        ]
    );
    let plain = json!({"metadata": meta("x"), "spec": {"attachRequired": false}});
    let c = cells("storage.k8s.io", "csidrivers", &plain);
    assert_eq!(
        (&c[1], &c[4], &c[6]),
        (&json!(false), &json!("<unset>"), &json!("<none>"))
    );

    let n =
        json!({"metadata": meta("node-1"), "spec": {"drivers": [{"name": "a", "nodeID": "n"}]}});
    assert_eq!(
        cells("storage.k8s.io", "csinodes", &n),
        vec![json!("node-1"), json!(1), json!("60m")]
    );

    assert_eq!(
        column_definitions("storage.k8s.io", "volumeattachments")[1]["format"],
        "name"
    );
    let va = json!({"metadata": meta("csi-123"), "spec": {"attacher": "ebs.csi.aws.com", "nodeName": "node-1",
        "source": {"persistentVolumeName": "pv-1"}}, "status": {"attached": true}});
    assert_eq!(
        cells("storage.k8s.io", "volumeattachments", &va),
        vec![
            json!("csi-123"),
            json!("ebs.csi.aws.com"),
            json!("pv-1"),
            json!("node-1"),
            json!(true),
            json!("60m")
        ]
    );

    let cap = json!({"metadata": meta("csisc-1"), "storageClassName": "fast"});
    assert_eq!(
        cells("storage.k8s.io", "csistoragecapacities", &cap),
        vec![json!("csisc-1"), json!("fast"), json!("<unset>")]
    );
}
