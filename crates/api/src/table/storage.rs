//! Printers of storage.k8s.io: storageclasses, csidrivers, csinodes, volumeattachments,
//! csistoragecapacities.

use jiff::Timestamp;
use serde_json::Value;

use super::duration::since;
use super::format::{arr_at, created, get, name, opt_bool_at, opt_str_at, quantity, str_at};
use super::{AGE, Column, NAME, Printer, col};

pub(super) fn printer(group: &str, resource: &str) -> Option<Printer> {
    let (columns, cells): (&'static [Column], super::CellsFn) = match (group, resource) {
        ("storage.k8s.io", "storageclasses") => (STORAGE_CLASS_COLUMNS, storage_class_cells),
        ("storage.k8s.io", "csidrivers") => (CSI_DRIVER_COLUMNS, csi_driver_cells),
        ("storage.k8s.io", "csinodes") => (CSI_NODE_COLUMNS, csi_node_cells),
        ("storage.k8s.io", "volumeattachments") => {
            (VOLUME_ATTACHMENT_COLUMNS, volume_attachment_cells)
        }
        ("storage.k8s.io", "csistoragecapacities") => (CSI_CAPACITY_COLUMNS, csi_capacity_cells),
        _ => return None,
    };
    Some(Printer { columns, cells })
}

fn age(obj: &Value, now: Timestamp) -> Value {
    since(created(obj), now).into()
}

const STORAGE_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Provisioner",
        "string",
        "provisioner indicates the type of the provisioner.",
    ),
    col(
        "ReclaimPolicy",
        "string",
        "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete.",
    ),
    col(
        "VolumeBindingMode",
        "string",
        "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.",
    ),
    col(
        "AllowVolumeExpansion",
        "string",
        "allowVolumeExpansion shows whether the storage class allow volume expand.",
    ),
    AGE,
];

const DEFAULT_CLASS_ANNOTATIONS: [&str; 2] = [
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
];

fn storage_class_cells(sc: &Value, now: Timestamp) -> Vec<Value> {
    let is_default = DEFAULT_CLASS_ANNOTATIONS
        .iter()
        .any(|a| opt_str_at(sc, &["metadata", "annotations", a]) == Some("true"));
    let display_name = if is_default {
        format!("{} (default)", name(sc))
    } else {
        name(sc).to_owned()
    };
    vec![
        display_name.into(),
        str_at(sc, &["provisioner"]).into(),
        opt_str_at(sc, &["reclaimPolicy"])
            .unwrap_or("Delete")
            .into(),
        opt_str_at(sc, &["volumeBindingMode"])
            .unwrap_or("Immediate")
            .into(),
        opt_bool_at(sc, &["allowVolumeExpansion"])
            .unwrap_or(false)
            .into(),
        age(sc, now),
    ]
}

const CSI_DRIVER_COLUMNS: &[Column] = &[
    NAME,
    col(
        "AttachRequired",
        "boolean",
        "attachRequired indicates this CSI volume driver requires an attach operation.",
    ),
    col(
        "PodInfoOnMount",
        "boolean",
        "podInfoOnMount indicates this CSI volume driver requires additional pod information (like podName, podUID, etc.) during mount operations.",
    ),
    col(
        "StorageCapacity",
        "boolean",
        "storageCapacity indicates that the CSI volume driver wants pod scheduling to consider the storage capacity that the driver deployment will report.",
    ),
    col(
        "TokenRequests",
        "string",
        "tokenRequests indicates the CSI driver needs pods' service account tokens it is mounting volume for to do necessary authentication.",
    ),
    col(
        "RequiresRepublish",
        "boolean",
        "requiresRepublish indicates the CSI driver wants `NodePublishVolume` being periodically called to reflect any possible change in the mounted volume.",
    ),
    col(
        "Modes",
        "string",
        "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports.",
    ),
    AGE,
];

fn csi_driver_cells(d: &Value, now: Timestamp) -> Vec<Value> {
    let modes: Vec<&str> = arr_at(d, &["spec", "volumeLifecycleModes"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let token_requests = match get(d, &["spec", "tokenRequests"]).and_then(Value::as_array) {
        Some(requests) => requests
            .iter()
            .map(|t| str_at(t, &["audience"]))
            .collect::<Vec<_>>()
            .join(","),
        None => "<unset>".to_owned(),
    };
    vec![
        name(d).into(),
        opt_bool_at(d, &["spec", "attachRequired"])
            .unwrap_or(true)
            .into(),
        opt_bool_at(d, &["spec", "podInfoOnMount"])
            .unwrap_or(false)
            .into(),
        opt_bool_at(d, &["spec", "storageCapacity"])
            .unwrap_or(false)
            .into(),
        token_requests.into(),
        opt_bool_at(d, &["spec", "requiresRepublish"])
            .unwrap_or(false)
            .into(),
        if modes.is_empty() {
            "<none>".to_owned()
        } else {
            modes.join(",")
        }
        .into(),
        age(d, now),
    ]
}

const CSI_NODE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Drivers",
        "integer",
        "Drivers indicates the number of CSI drivers registered on the node",
    ),
    AGE,
];

fn csi_node_cells(n: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(n).into(),
        (arr_at(n, &["spec", "drivers"]).len() as i64).into(),
        age(n, now),
    ]
}

const VOLUME_ATTACHMENT_COLUMNS: &[Column] = &[
    NAME,
    // Upstream marks this column with the `name` format too.
    Column {
        format: "name",
        ..col(
            "Attacher",
            "string",
            "attacher indicates the name of the volume driver that MUST handle this request.",
        )
    },
    col(
        "PV",
        "string",
        "persistentVolumeName represents the name of the persistent volume to attach.",
    ),
    col(
        "Node",
        "string",
        "nodeName represents the node that the volume should be attached to.",
    ),
    col(
        "Attached",
        "boolean",
        "attached indicates the volume is successfully attached.",
    ),
    AGE,
];

fn volume_attachment_cells(va: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(va).into(),
        str_at(va, &["spec", "attacher"]).into(),
        str_at(va, &["spec", "source", "persistentVolumeName"]).into(),
        str_at(va, &["spec", "nodeName"]).into(),
        opt_bool_at(va, &["status", "attached"])
            .unwrap_or(false)
            .into(),
        age(va, now),
    ]
}

const CSI_CAPACITY_COLUMNS: &[Column] = &[
    NAME,
    col(
        "StorageClassName",
        "string",
        "storageClassName represents the name of the StorageClass that the reported capacity applies to.",
    ),
    col(
        "Capacity",
        "string",
        "capacity is the value reported by the CSI driver in its GetCapacityResponse for a GetCapacityRequest with topology and parameters that match the previous fields.",
    ),
];

fn csi_capacity_cells(c: &Value, _now: Timestamp) -> Vec<Value> {
    let capacity = match get(c, &["capacity"]) {
        Some(q) if !q.is_null() => quantity(Some(q)),
        _ => "<unset>".to_owned(),
    };
    vec![
        name(c).into(),
        str_at(c, &["storageClassName"]).into(),
        capacity.into(),
    ]
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
