//! Printers of the core cluster objects: nodes, namespaces, services, endpoints,
//! endpointslices, events (core/v1 and events.k8s.io/v1), configmaps, secrets,
//! serviceaccounts, persistentvolumes, persistentvolumeclaims, resourcequotas,
//! componentstatuses.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

use super::duration::since;
use super::format::{
    access_modes, arr_at, created, deleting, format_labels, get, int_at, join_host_port,
    list_with_more, map_len, name, obj_at, opt_int_at, opt_str_at, quantity, str_at, time_at,
};
use super::{AGE, Column, NAME, Printer, col, wide};

pub(super) fn printer(group: &str, resource: &str) -> Option<Printer> {
    let (columns, cells): (&'static [Column], super::CellsFn) = match (group, resource) {
        ("", "nodes") => (NODE_COLUMNS, node_cells),
        ("", "namespaces") => (NAMESPACE_COLUMNS, namespace_cells),
        ("", "services") => (SERVICE_COLUMNS, service_cells),
        ("", "endpoints") => (ENDPOINTS_COLUMNS, endpoints_cells),
        ("discovery.k8s.io", "endpointslices") => (ENDPOINT_SLICE_COLUMNS, endpoint_slice_cells),
        ("", "events") => (EVENT_COLUMNS, core_event_cells),
        ("events.k8s.io", "events") => (EVENT_COLUMNS, events_v1_cells),
        ("", "configmaps") => (CONFIGMAP_COLUMNS, configmap_cells),
        ("", "secrets") => (SECRET_COLUMNS, secret_cells),
        ("", "serviceaccounts") => (SERVICE_ACCOUNT_COLUMNS, service_account_cells),
        ("", "persistentvolumes") => (PV_COLUMNS, pv_cells),
        ("", "persistentvolumeclaims") => (PVC_COLUMNS, pvc_cells),
        ("", "resourcequotas") => (RESOURCE_QUOTA_COLUMNS, resource_quota_cells),
        ("", "componentstatuses") => (COMPONENT_STATUS_COLUMNS, component_status_cells),
        _ => return None,
    };
    Some(Printer { columns, cells })
}

fn age(obj: &Value, now: Timestamp) -> Value {
    since(created(obj), now).into()
}

// ---------------------------------------------------------------------------------------------
// nodes

const NODE_ADDRESSES_DESC: &str =
    "List of addresses reachable to the node. Queried from cloud provider, if available.";

const NODE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide(col("Internal-IP", "string", NODE_ADDRESSES_DESC)),
    wide(col("External-IP", "string", NODE_ADDRESSES_DESC)),
    wide(col(
        "OS-Image",
        "string",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    )),
    wide(col(
        "Kernel-Version",
        "string",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    )),
    wide(col(
        "Container-Runtime",
        "string",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
    )),
];

const NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";
const NODE_ROLE_LABEL: &str = "kubernetes.io/role";

fn node_roles(node: &Value) -> String {
    let mut roles = BTreeSet::new();
    for (key, value) in obj_at(node, &["metadata", "labels"]).into_iter().flatten() {
        if let Some(role) = key.strip_prefix(NODE_ROLE_PREFIX) {
            if !role.is_empty() {
                roles.insert(role.to_owned());
            }
        } else if key == NODE_ROLE_LABEL
            && let Some(role) = value.as_str().filter(|r| !r.is_empty())
        {
            roles.insert(role.to_owned());
        }
    }
    if roles.is_empty() {
        "<none>".to_owned()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    }
}

fn node_status(node: &Value) -> String {
    // Upstream indexes conditions by type, so the last Ready condition wins.
    let ready = arr_at(node, &["status", "conditions"])
        .iter()
        .rev()
        .find(|c| str_at(c, &["type"]) == "Ready");
    let mut status = match ready {
        Some(c) if str_at(c, &["status"]) == "True" => "Ready".to_owned(),
        Some(_) => "NotReady".to_owned(),
        None => "Unknown".to_owned(),
    };
    if get(node, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

fn node_address(node: &Value, ty: &str) -> String {
    arr_at(node, &["status", "addresses"])
        .iter()
        .find(|a| str_at(a, &["type"]) == ty)
        .map_or_else(
            || "<none>".to_owned(),
            |a| str_at(a, &["address"]).to_owned(),
        )
}

fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    let info = |field: &str| match str_at(node, &["status", "nodeInfo", field]) {
        "" => "<unknown>".to_owned(),
        v => v.to_owned(),
    };
    vec![
        name(node).into(),
        node_status(node).into(),
        node_roles(node).into(),
        age(node, now),
        str_at(node, &["status", "nodeInfo", "kubeletVersion"]).into(),
        node_address(node, "InternalIP").into(),
        node_address(node, "ExternalIP").into(),
        info("osImage").into(),
        info("kernelVersion").into(),
        info("containerRuntimeVersion").into(),
    ]
}

// ---------------------------------------------------------------------------------------------
// namespaces

const NAMESPACE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the namespace"),
    AGE,
];

fn namespace_cells(ns: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(ns).into(),
        str_at(ns, &["status", "phase"]).into(),
        age(ns, now),
    ]
}

// ---------------------------------------------------------------------------------------------
// services

const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        "string",
        "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer.",
    ),
    col(
        "Cluster-IP",
        "string",
        "clusterIP is the IP address of the service and is usually assigned randomly.",
    ),
    col(
        "External-IP",
        "string",
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
    ),
    col(
        "Port(s)",
        "string",
        "The list of ports that are exposed by this service.",
    ),
    AGE,
    wide(col(
        "Selector",
        "string",
        "Route service traffic to pods with label keys and values matching this selector.",
    )),
];

/// Sorted, de-duplicated load-balancer ingress points (IP, else hostname), joined with `,`.
/// Server-side tables are always wide, so the list is never shortened.
fn load_balancer_addresses(obj: &Value) -> String {
    let set: BTreeSet<&str> = arr_at(obj, &["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|i| match (str_at(i, &["ip"]), str_at(i, &["hostname"])) {
            ("", "") => None,
            ("", host) => Some(host),
            (ip, _) => Some(ip),
        })
        .collect();
    set.into_iter().collect::<Vec<_>>().join(",")
}

fn service_external_ip(svc: &Value) -> String {
    let external: Vec<&str> = arr_at(svc, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match str_at(svc, &["spec", "type"]) {
        "ClusterIP" | "NodePort" if external.is_empty() => "<none>".to_owned(),
        "ClusterIP" | "NodePort" => external.join(","),
        "LoadBalancer" => {
            let lb = load_balancer_addresses(svc);
            match (lb.is_empty(), external.is_empty()) {
                (true, true) => "<pending>".to_owned(),
                (false, true) => lb,
                (true, false) => external.join(","),
                (false, false) => format!("{lb},{}", external.join(",")),
            }
        }
        "ExternalName" => str_at(svc, &["spec", "externalName"]).to_owned(),
        _ => "<unknown>".to_owned(),
    }
}

fn service_ports(svc: &Value) -> String {
    let ports: Vec<String> = arr_at(svc, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = int_at(p, &["port"]);
            let protocol = str_at(p, &["protocol"]);
            match int_at(p, &["nodePort"]) {
                n if n > 0 => format!("{port}:{n}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    if ports.is_empty() {
        "<none>".to_owned()
    } else {
        ports.join(",")
    }
}

fn service_cells(svc: &Value, now: Timestamp) -> Vec<Value> {
    // `clusterIPs[0]` is what upstream prints; `clusterIP` is its single-stack mirror.
    let cluster_ip = arr_at(svc, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .or_else(|| opt_str_at(svc, &["spec", "clusterIP"]))
        .filter(|ip| !ip.is_empty())
        .unwrap_or("<none>");
    vec![
        name(svc).into(),
        str_at(svc, &["spec", "type"]).into(),
        cluster_ip.into(),
        service_external_ip(svc).into(),
        service_ports(svc).into(),
        age(svc, now),
        format_labels(obj_at(svc, &["spec", "selector"])).into(),
    ]
}

// ---------------------------------------------------------------------------------------------
// endpoints, endpointslices

const ENDPOINTS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Endpoints",
        "string",
        "The set of all endpoints is the union of all subsets.",
    ),
    AGE,
];

/// Upstream `formatEndpoints`: ready `ip:port` pairs over subsets × ports × addresses (bare IPs
/// for port-less subsets), the first three then ` + N more...`; `<none>` without subsets.
fn format_endpoints(ep: &Value) -> String {
    const MAX: usize = 3;
    let subsets = arr_at(ep, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_owned();
    }
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in subsets {
        let addresses = arr_at(ss, &["addresses"]);
        let ports = arr_at(ss, &["ports"]);
        if ports.is_empty() {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(str_at(a, &["ip"]).to_owned());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(join_host_port(str_at(a, &["ip"]), int_at(port, &["port"])));
            }
        }
    }
    let shown = list.join(",");
    if more {
        format!("{shown} + {} more...", count - MAX)
    } else {
        shown
    }
}

fn endpoints_cells(ep: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(ep).into(), format_endpoints(ep).into(), age(ep, now)]
}

const ENDPOINT_SLICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "AddressType",
        "string",
        "addressType specifies the type of address carried by this EndpointSlice.",
    ),
    col(
        "Ports",
        "string",
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
    ),
    col(
        "Endpoints",
        "string",
        "endpoints is a list of unique endpoints in this slice.",
    ),
    AGE,
];

fn endpoint_slice_cells(slice: &Value, now: Timestamp) -> Vec<Value> {
    let ports: Vec<String> = arr_at(slice, &["ports"])
        .iter()
        .map(
            |p| match (opt_int_at(p, &["port"]), opt_str_at(p, &["name"])) {
                (Some(port), _) => port.to_string(),
                (None, Some(name)) => name.to_owned(),
                (None, None) => "*".to_owned(),
            },
        )
        .collect();
    let addresses: Vec<String> = arr_at(slice, &["endpoints"])
        .iter()
        .flat_map(|e| arr_at(e, &["addresses"]))
        .map(|a| a.as_str().unwrap_or("").to_owned())
        .collect();
    vec![
        name(slice).into(),
        str_at(slice, &["addressType"]).into(),
        list_with_more(&ports, 3).into(),
        list_with_more(&addresses, 3).into(),
        age(slice, now),
    ]
}

// ---------------------------------------------------------------------------------------------
// events

const EVENT_COLUMNS: &[Column] = &[
    col(
        "Last Seen",
        "string",
        "The time at which the most recent occurrence of this event was recorded.",
    ),
    col(
        "Type",
        "string",
        "Type of this event (Normal, Warning), new types could be added in the future",
    ),
    col(
        "Reason",
        "string",
        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
    ),
    col("Object", "string", "The object that this event is about."),
    wide(col(
        "Subobject",
        "string",
        "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
    )),
    wide(col(
        "Source",
        "string",
        "The component reporting this event. Should be a short machine understandable string.",
    )),
    col(
        "Message",
        "string",
        "A human-readable description of the status of this operation.",
    ),
    wide(col(
        "First Seen",
        "string",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
    )),
    wide(col(
        "Count",
        "string",
        "The number of times this event has occurred.",
    )),
    wide(NAME),
];

/// The fields of an event the printer reads, named as in core/v1 (events.k8s.io/v1 objects are
/// mapped onto them as upstream's conversion does).
struct EventView<'a> {
    first_timestamp: Option<Timestamp>,
    last_timestamp: Option<Timestamp>,
    event_time: Option<Timestamp>,
    series: Option<&'a Value>,
    count: i64,
    involved: &'a Value,
    ty: &'a str,
    reason: &'a str,
    message: &'a str,
    source: &'a Value,
    reporting_controller: &'a str,
    reporting_instance: &'a str,
}

fn core_event_cells(ev: &Value, now: Timestamp) -> Vec<Value> {
    event_cells(
        ev,
        &EventView {
            first_timestamp: time_at(ev, &["firstTimestamp"]),
            last_timestamp: time_at(ev, &["lastTimestamp"]),
            event_time: time_at(ev, &["eventTime"]),
            series: get(ev, &["series"]).filter(|s| s.is_object()),
            count: int_at(ev, &["count"]),
            involved: get(ev, &["involvedObject"]).unwrap_or(&Value::Null),
            ty: str_at(ev, &["type"]),
            reason: str_at(ev, &["reason"]),
            message: str_at(ev, &["message"]),
            source: get(ev, &["source"]).unwrap_or(&Value::Null),
            reporting_controller: str_at(ev, &["reportingComponent"]),
            reporting_instance: str_at(ev, &["reportingInstance"]),
        },
        now,
    )
}

fn events_v1_cells(ev: &Value, now: Timestamp) -> Vec<Value> {
    event_cells(
        ev,
        &EventView {
            first_timestamp: time_at(ev, &["deprecatedFirstTimestamp"]),
            last_timestamp: time_at(ev, &["deprecatedLastTimestamp"]),
            event_time: time_at(ev, &["eventTime"]),
            series: get(ev, &["series"]).filter(|s| s.is_object()),
            count: int_at(ev, &["deprecatedCount"]),
            involved: get(ev, &["regarding"]).unwrap_or(&Value::Null),
            ty: str_at(ev, &["type"]),
            reason: str_at(ev, &["reason"]),
            message: str_at(ev, &["note"]),
            source: get(ev, &["deprecatedSource"]).unwrap_or(&Value::Null),
            reporting_controller: str_at(ev, &["reportingController"]),
            reporting_instance: str_at(ev, &["reportingInstance"]),
        },
        now,
    )
}

fn event_cells(ev: &Value, view: &EventView<'_>, now: Timestamp) -> Vec<Value> {
    let first_seen = match view.first_timestamp {
        Some(t) => since(Some(t), now),
        None => since(view.event_time, now),
    };
    let mut last_seen = match view.last_timestamp {
        Some(t) => since(Some(t), now),
        None => first_seen.clone(),
    };
    let count = match view.series {
        Some(series) => {
            last_seen = since(time_at(series, &["lastObservedTime"]), now);
            int_at(series, &["count"])
        }
        // Singleton events of the new API carry no count.
        None if view.count == 0 => 1,
        None => view.count,
    };
    let kind = str_at(view.involved, &["kind"]).to_lowercase();
    let target = match str_at(view.involved, &["name"]) {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let component = non_empty_or(
        str_at(view.source, &["component"]),
        view.reporting_controller,
    );
    let instance = non_empty_or(str_at(view.source, &["host"]), view.reporting_instance);
    let source = if instance.is_empty() {
        component.to_owned()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        last_seen.into(),
        view.ty.into(),
        view.reason.into(),
        target.into(),
        str_at(view.involved, &["fieldPath"]).into(),
        source.into(),
        view.message.trim().into(),
        first_seen.into(),
        count.into(),
        name(ev).into(),
    ]
}

fn non_empty_or<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() { b } else { a }
}

// ---------------------------------------------------------------------------------------------
// configmaps, secrets, serviceaccounts

const CONFIGMAP_COLUMNS: &[Column] = &[
    NAME,
    col("Data", "string", "Data contains the configuration data."),
    AGE,
];

fn configmap_cells(cm: &Value, now: Timestamp) -> Vec<Value> {
    let entries = map_len(cm, &["data"]) + map_len(cm, &["binaryData"]);
    vec![name(cm).into(), (entries as i64).into(), age(cm, now)]
}

const SECRET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data.",
    ),
    col("Data", "string", "Data contains the secret data."),
    AGE,
];

fn secret_cells(secret: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(secret).into(),
        str_at(secret, &["type"]).into(),
        (map_len(secret, &["data"]) as i64).into(),
        age(secret, now),
    ]
}

const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Secrets",
        "string",
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
    ),
    AGE,
];

fn service_account_cells(sa: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(sa).into(),
        (arr_at(sa, &["secrets"]).len() as i64).into(),
        age(sa, now),
    ]
}

// ---------------------------------------------------------------------------------------------
// persistentvolumes, persistentvolumeclaims

const BETA_STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

const PV_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Capacity",
        "string",
        "capacity is the description of the persistent volume's resources and capacity.",
    ),
    col(
        "Access Modes",
        "string",
        "accessModes contains all ways the volume can be mounted.",
    ),
    col(
        "Reclaim Policy",
        "string",
        "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
    ),
    col(
        "Status",
        "string",
        "phase indicates if a volume is available, bound to a claim, or released by a claim.",
    ),
    col(
        "Claim",
        "string",
        "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
    ),
    col("StorageClass", "string", "StorageClass of the pv"),
    col(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pv",
    ),
    col(
        "Reason",
        "string",
        "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
    ),
    AGE,
    wide(col(
        "VolumeMode",
        "string",
        "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
    )),
];

/// The beta storage-class annotation, when present, wins over the spec field.
fn beta_storage_class(obj: &Value) -> Option<&str> {
    opt_str_at(
        obj,
        &["metadata", "annotations", BETA_STORAGE_CLASS_ANNOTATION],
    )
}

fn phase_or_terminating(obj: &Value) -> &str {
    if deleting(obj) {
        "Terminating"
    } else {
        str_at(obj, &["status", "phase"])
    }
}

fn pv_cells(pv: &Value, now: Timestamp) -> Vec<Value> {
    let claim = match get(pv, &["spec", "claimRef"]).filter(|c| c.is_object()) {
        Some(c) => format!("{}/{}", str_at(c, &["namespace"]), str_at(c, &["name"])),
        None => String::new(),
    };
    let class = beta_storage_class(pv).unwrap_or_else(|| str_at(pv, &["spec", "storageClassName"]));
    vec![
        name(pv).into(),
        quantity(get(pv, &["spec", "capacity", "storage"])).into(),
        access_modes(arr_at(pv, &["spec", "accessModes"])).into(),
        str_at(pv, &["spec", "persistentVolumeReclaimPolicy"]).into(),
        phase_or_terminating(pv).into(),
        claim.into(),
        class.into(),
        opt_str_at(pv, &["spec", "volumeAttributesClassName"])
            .unwrap_or("<unset>")
            .into(),
        str_at(pv, &["status", "reason"]).into(),
        age(pv, now),
        opt_str_at(pv, &["spec", "volumeMode"])
            .unwrap_or("<unset>")
            .into(),
    ]
}

const PVC_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Status",
        "string",
        "phase represents the current phase of PersistentVolumeClaim.",
    ),
    col(
        "Volume",
        "string",
        "volumeName is the binding reference to the PersistentVolume backing this claim.",
    ),
    col(
        "Capacity",
        "string",
        "capacity represents the actual resources of the underlying volume.",
    ),
    col(
        "Access Modes",
        "string",
        "accessModes contains the actual access modes the volume backing the PVC has.",
    ),
    col("StorageClass", "string", "StorageClass of the pvc"),
    col(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pvc",
    ),
    AGE,
    wide(col(
        "VolumeMode",
        "string",
        "volumeMode defines what type of volume is required by the claim.",
    )),
];

fn pvc_cells(pvc: &Value, now: Timestamp) -> Vec<Value> {
    let volume = str_at(pvc, &["spec", "volumeName"]);
    // Capacity and access modes are only meaningful once the claim is bound.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(get(pvc, &["status", "capacity", "storage"])),
            access_modes(arr_at(pvc, &["status", "accessModes"])),
        )
    };
    let class = beta_storage_class(pvc)
        .or_else(|| opt_str_at(pvc, &["spec", "storageClassName"]))
        .unwrap_or("");
    vec![
        name(pvc).into(),
        phase_or_terminating(pvc).into(),
        volume.into(),
        capacity.into(),
        modes.into(),
        class.into(),
        opt_str_at(pvc, &["spec", "volumeAttributesClassName"])
            .unwrap_or("<unset>")
            .into(),
        age(pvc, now),
        opt_str_at(pvc, &["spec", "volumeMode"])
            .unwrap_or("<unset>")
            .into(),
    ]
}

// ---------------------------------------------------------------------------------------------
// resourcequotas, componentstatuses

const RESOURCE_QUOTA_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Request",
        "string",
        "Request represents a minimum amount of cpu/memory that a container may consume.",
    ),
    col(
        "Limit",
        "string",
        "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
    ),
    AGE,
];

fn resource_quota_cells(quota: &Value, now: Timestamp) -> Vec<Value> {
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    // Sorted explicitly: serde_json maps keep insertion order when `preserve_order` is on.
    let mut hard: Vec<(&String, &Value)> = obj_at(quota, &["status", "hard"])
        .into_iter()
        .flatten()
        .collect();
    hard.sort_by(|a, b| a.0.cmp(b.0));
    for (resource, hard) in hard {
        let used = quantity(get(quota, &["status", "used", resource]));
        let entry = format!("{resource}: {used}/{}", quantity(Some(hard)));
        if resource
            .split_once('.')
            .is_some_and(|(prefix, _)| prefix == "limits")
        {
            limits.push(entry);
        } else {
            requests.push(entry);
        }
    }
    vec![
        name(quota).into(),
        requests.join(", ").into(),
        limits.join(", ").into(),
        age(quota, now),
    ]
}

const COMPONENT_STATUS_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the component conditions"),
    col("Message", "string", "Message of the component conditions"),
    col("Error", "string", "Error of the component conditions"),
];

fn component_status_cells(cs: &Value, _now: Timestamp) -> Vec<Value> {
    let healthy = arr_at(cs, &["conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == "Healthy");
    let (status, message, error) = match healthy {
        Some(c) => (
            if str_at(c, &["status"]) == "True" {
                "Healthy"
            } else {
                "Unhealthy"
            },
            str_at(c, &["message"]),
            str_at(c, &["error"]),
        ),
        None => ("Unknown", "", ""),
    };
    vec![name(cs).into(), status.into(), message.into(), error.into()]
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
