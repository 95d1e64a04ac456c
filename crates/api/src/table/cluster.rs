//! Printers of the add-on API groups: rbac bindings, networking, leases, priority
//! and runtime classes, admission configuration, certificate signing requests, API priority
//! and fairness, and API services.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use super::duration::{human_duration, since};
use super::format::{
    arr_at, created, format_label_selector, get, int_at, name, obj_at, opt_bool_at, opt_int_at,
    opt_str_at, selector_string, str_at,
};
use super::{AGE, Column, NAME, Printer, col, wide};

pub(super) fn printer(group: &str, resource: &str) -> Option<Printer> {
    let (columns, cells): (&'static [Column], super::CellsFn) = match (group, resource) {
        ("rbac.authorization.k8s.io", "rolebindings") => (ROLE_BINDING_COLUMNS, binding_cells),
        ("rbac.authorization.k8s.io", "clusterrolebindings") => {
            (CLUSTER_ROLE_BINDING_COLUMNS, binding_cells)
        }
        ("networking.k8s.io", "ingresses") => (INGRESS_COLUMNS, ingress_cells),
        ("networking.k8s.io", "ingressclasses") => (INGRESS_CLASS_COLUMNS, ingress_class_cells),
        ("networking.k8s.io", "networkpolicies") => (NETWORK_POLICY_COLUMNS, network_policy_cells),
        ("networking.k8s.io", "servicecidrs") => (SERVICE_CIDR_COLUMNS, service_cidr_cells),
        ("networking.k8s.io", "ipaddresses") => (IP_ADDRESS_COLUMNS, ip_address_cells),
        ("coordination.k8s.io", "leases") => (LEASE_COLUMNS, lease_cells),
        ("scheduling.k8s.io", "priorityclasses") => (PRIORITY_CLASS_COLUMNS, priority_class_cells),
        ("node.k8s.io", "runtimeclasses") => (RUNTIME_CLASS_COLUMNS, runtime_class_cells),
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations")
        | ("admissionregistration.k8s.io", "validatingwebhookconfigurations") => {
            (WEBHOOK_COLUMNS, webhook_cells)
        }
        ("admissionregistration.k8s.io", "validatingadmissionpolicies") => {
            (ADMISSION_POLICY_COLUMNS, admission_policy_cells)
        }
        ("admissionregistration.k8s.io", "validatingadmissionpolicybindings") => (
            ADMISSION_POLICY_BINDING_COLUMNS,
            admission_policy_binding_cells,
        ),
        ("certificates.k8s.io", "certificatesigningrequests") => (CSR_COLUMNS, csr_cells),
        ("flowcontrol.apiserver.k8s.io", "flowschemas") => (FLOW_SCHEMA_COLUMNS, flow_schema_cells),
        ("flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations") => {
            (PRIORITY_LEVEL_COLUMNS, priority_level_cells)
        }
        ("apiregistration.k8s.io", "apiservices") => (API_SERVICE_COLUMNS, api_service_cells),
        _ => return None,
    };
    Some(Printer { columns, cells })
}

fn age(obj: &Value, now: Timestamp) -> Value {
    since(created(obj), now).into()
}

// ---------------------------------------------------------------------------------------------
// rbac.authorization.k8s.io (roles and clusterroles have no printer upstream)

const ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Role",
        "string",
        "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
    ),
    AGE,
    wide(col("Users", "string", "Users in the roleBinding")),
    wide(col("Groups", "string", "Groups in the roleBinding")),
    wide(col(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the roleBinding",
    )),
];

const CLUSTER_ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Role",
        "string",
        "RoleRef can only reference a ClusterRole in the global namespace.",
    ),
    AGE,
    wide(col("Users", "string", "Users in the clusterRoleBinding")),
    wide(col("Groups", "string", "Groups in the clusterRoleBinding")),
    wide(col(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the clusterRoleBinding",
    )),
];

fn binding_cells(b: &Value, now: Timestamp) -> Vec<Value> {
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for s in arr_at(b, &["subjects"]) {
        let subject_name = str_at(s, &["name"]);
        match str_at(s, &["kind"]) {
            "User" => users.push(subject_name.to_owned()),
            "Group" => groups.push(subject_name.to_owned()),
            "ServiceAccount" => sas.push(format!("{}/{subject_name}", str_at(s, &["namespace"]))),
            _ => {}
        }
    }
    vec![
        name(b).into(),
        format!(
            "{}/{}",
            str_at(b, &["roleRef", "kind"]),
            str_at(b, &["roleRef", "name"])
        )
        .into(),
        age(b, now),
        users.join(", ").into(),
        groups.join(", ").into(),
        sas.join(", ").into(),
    ]
}

// ---------------------------------------------------------------------------------------------
// networking.k8s.io

const INGRESS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Class",
        "string",
        "The name of the IngressClass resource that should be used for additional configuration",
    ),
    col(
        "Hosts",
        "string",
        "Hosts that incoming requests are matched against before the ingress rule",
    ),
    col(
        "Address",
        "string",
        "Address is a list containing ingress points for the load-balancer",
    ),
    col("Ports", "string", "Ports of TLS configurations that open"),
    AGE,
];

fn ingress_cells(ing: &Value, now: Timestamp) -> Vec<Value> {
    const MAX: usize = 3;
    let rules = arr_at(ing, &["spec", "rules"]);
    // Upstream collects up to three non-empty hosts and reports "more" only when another rule
    // follows the one that filled the list; the count then covers every rule past the third.
    let mut hosts: Vec<&str> = Vec::with_capacity(MAX);
    let mut more = false;
    for rule in rules {
        if hosts.len() == MAX {
            more = true;
            break;
        }
        let host = str_at(rule, &["host"]);
        if !host.is_empty() {
            hosts.push(host);
        }
    }
    let hosts_text = if hosts.is_empty() {
        "*".to_owned()
    } else if more {
        format!("{} + {} more...", hosts.join(","), rules.len() - MAX)
    } else {
        hosts.join(",")
    };
    let addresses: BTreeSet<&str> = arr_at(ing, &["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|i| match (str_at(i, &["ip"]), str_at(i, &["hostname"])) {
            ("", "") => None,
            ("", host) => Some(host),
            (ip, _) => Some(ip),
        })
        .collect();
    let ports = if arr_at(ing, &["spec", "tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name(ing).into(),
        opt_str_at(ing, &["spec", "ingressClassName"])
            .unwrap_or("<none>")
            .into(),
        hosts_text.into(),
        addresses.into_iter().collect::<Vec<_>>().join(",").into(),
        ports.into(),
        age(ing, now),
    ]
}

const INGRESS_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Controller",
        "string",
        "Controller that is responsible for handling this class",
    ),
    col(
        "Parameters",
        "string",
        "A reference to a resource with additional parameters",
    ),
    AGE,
];

fn ingress_class_cells(ic: &Value, now: Timestamp) -> Vec<Value> {
    let parameters = match get(ic, &["spec", "parameters"]).filter(|p| p.is_object()) {
        Some(p) => {
            let kind = match opt_str_at(p, &["apiGroup"]) {
                Some(g) => format!("{}.{g}", str_at(p, &["kind"])),
                None => str_at(p, &["kind"]).to_owned(),
            };
            format!("{kind}/{}", str_at(p, &["name"]))
        }
        None => "<none>".to_owned(),
    };
    vec![
        name(ic).into(),
        str_at(ic, &["spec", "controller"]).into(),
        parameters.into(),
        age(ic, now),
    ]
}

const NETWORK_POLICY_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Pod-Selector",
        "string",
        "Selects the pods to which this NetworkPolicy object applies.",
    ),
    AGE,
];

fn network_policy_cells(np: &Value, now: Timestamp) -> Vec<Value> {
    // The pod selector is a struct, never nil: absent means "select every pod".
    let selector = get(np, &["spec", "podSelector"])
        .filter(|s| !s.is_null())
        .cloned()
        .unwrap_or_else(|| Value::Object(serde_json::Map::new()));
    vec![
        name(np).into(),
        format_label_selector(Some(&selector)).into(),
        age(np, now),
    ]
}

const SERVICE_CIDR_COLUMNS: &[Column] = &[
    NAME,
    col(
        "CIDRs",
        "string",
        "CIDRs defines the IP blocks in CIDR notation (e.g. \"192.168.0.0/24\" or \"2001:db8::/64\") from which to assign service cluster IPs.",
    ),
    AGE,
];

fn service_cidr_cells(sc: &Value, now: Timestamp) -> Vec<Value> {
    let cidrs: Vec<&str> = arr_at(sc, &["spec", "cidrs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    vec![name(sc).into(), cidrs.join(",").into(), age(sc, now)]
}

const IP_ADDRESS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "ParentRef",
        "string",
        "ParentRef references the resource that an IPAddress is attached to.",
    ),
];

/// Upstream also appends an age cell that has no column; it is left out here so that every
/// row has exactly one cell per column (kubectl prints NAME and PARENTREF only).
fn ip_address_cells(ip: &Value, _now: Timestamp) -> Vec<Value> {
    let parent = match get(ip, &["spec", "parentRef"]).filter(|p| p.is_object()) {
        Some(p) => {
            let resource = match str_at(p, &["group"]) {
                "" => str_at(p, &["resource"]).to_owned(),
                g => format!("{}.{g}", str_at(p, &["resource"])),
            };
            let mut text = resource.to_lowercase();
            if let Some(ns) = opt_str_at(p, &["namespace"]).filter(|n| !n.is_empty()) {
                text.push('/');
                text.push_str(ns);
            }
            text.push('/');
            text.push_str(str_at(p, &["name"]));
            text
        }
        None => "<none>".to_owned(),
    };
    vec![name(ip).into(), parent.into()]
}

// ---------------------------------------------------------------------------------------------
// coordination.k8s.io, scheduling.k8s.io, node.k8s.io

const LEASE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a current lease.",
    ),
    AGE,
];

fn lease_cells(lease: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(lease).into(),
        str_at(lease, &["spec", "holderIdentity"]).into(),
        age(lease, now),
    ]
}

// Upstream declares PreemptionPolicy with priority 0 (it is shown without `-o wide`).
const PRIORITY_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Value",
        "integer",
        "value represents the integer value of this priority class.",
    ),
    col(
        "Global-Default",
        "boolean",
        "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class.",
    ),
    AGE,
    col(
        "PreemptionPolicy",
        "string",
        "preemptionPolicy is the Policy for preempting pods with lower priority.",
    ),
];

fn priority_class_cells(pc: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(pc).into(),
        int_at(pc, &["value"]).into(),
        opt_bool_at(pc, &["globalDefault"]).unwrap_or(false).into(),
        age(pc, now),
        str_at(pc, &["preemptionPolicy"]).into(),
    ]
}

const RUNTIME_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Handler",
        "string",
        "handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class.",
    ),
    AGE,
];

fn runtime_class_cells(rc: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(rc).into(),
        str_at(rc, &["handler"]).into(),
        age(rc, now),
    ]
}

// ---------------------------------------------------------------------------------------------
// admissionregistration.k8s.io

const WEBHOOK_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Webhooks",
        "integer",
        "Webhooks indicates the number of webhooks registered in this configuration",
    ),
    AGE,
];

fn webhook_cells(w: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(w).into(),
        (arr_at(w, &["webhooks"]).len() as i64).into(),
        age(w, now),
    ]
}

const ADMISSION_POLICY_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Validations",
        "integer",
        "Validations indicates the number of validation rules defined in this configuration",
    ),
    col(
        "ParamKind",
        "string",
        "ParamKind specifies the kind of resources used to parameterize this policy",
    ),
    AGE,
];

fn admission_policy_cells(p: &Value, now: Timestamp) -> Vec<Value> {
    let param_kind = match get(p, &["spec", "paramKind"]).filter(|k| k.is_object()) {
        Some(k) => format!("{}/{}", str_at(k, &["apiVersion"]), str_at(k, &["kind"])),
        None => "<unset>".to_owned(),
    };
    vec![
        name(p).into(),
        (arr_at(p, &["spec", "validations"]).len() as i64).into(),
        param_kind.into(),
        age(p, now),
    ]
}

const ADMISSION_POLICY_BINDING_COLUMNS: &[Column] = &[
    NAME,
    col(
        "PolicyName",
        "string",
        "PolicyName indicates the policy definition which the policy binding binded to",
    ),
    col(
        "ParamRef",
        "string",
        "ParamRef indicates the param resource which sets the configration param",
    ),
    AGE,
];

fn admission_policy_binding_cells(b: &Value, now: Timestamp) -> Vec<Value> {
    let param = match get(b, &["spec", "paramRef"]).filter(|r| r.is_object()) {
        Some(r) => match (str_at(r, &["name"]), str_at(r, &["namespace"])) {
            ("", _) => match get(r, &["selector"]).filter(|s| !s.is_null()) {
                Some(sel) => selector_string(Some(sel)).unwrap_or_default(),
                None => "<unset>".to_owned(),
            },
            // Whether the param is cluster-scoped is unknown here, hence `*`.
            (n, "") => format!("*/{n}"),
            (n, ns) => format!("{ns}/{n}"),
        },
        None => "<unset>".to_owned(),
    };
    vec![
        name(b).into(),
        str_at(b, &["spec", "policyName"]).into(),
        param.into(),
        age(b, now),
    ]
}

// ---------------------------------------------------------------------------------------------
// certificates.k8s.io

const CSR_COLUMNS: &[Column] = &[
    NAME,
    AGE,
    col(
        "SignerName",
        "string",
        "signerName indicates the requested signer, and is a qualified name.",
    ),
    col(
        "Requestor",
        "string",
        "request contains an x509 certificate signing request encoded in a \"CERTIFICATE REQUEST\" PEM block.",
    ),
    col(
        "RequestedDuration",
        "string",
        "expirationSeconds is the requested duration of validity of the issued certificate.",
    ),
    col(
        "Condition",
        "string",
        "conditions applied to the request. Known conditions are \"Approved\", \"Denied\", and \"Failed\".",
    ),
];

fn csr_status(csr: &Value) -> String {
    let has = |ty: &str| {
        arr_at(csr, &["status", "conditions"])
            .iter()
            .any(|c| str_at(c, &["type"]) == ty)
    };
    let mut status = if has("Denied") {
        "Denied".to_owned()
    } else if has("Approved") {
        "Approved".to_owned()
    } else {
        "Pending".to_owned()
    };
    if has("Failed") {
        status.push_str(",Failed");
    }
    if !str_at(csr, &["status", "certificate"]).is_empty() {
        status.push_str(",Issued");
    }
    status
}

fn csr_cells(csr: &Value, now: Timestamp) -> Vec<Value> {
    let signer = match str_at(csr, &["spec", "signerName"]) {
        "" => "<none>",
        s => s,
    };
    let requested = opt_int_at(csr, &["spec", "expirationSeconds"]).map_or_else(
        || "<none>".to_owned(),
        |s| human_duration(SignedDuration::from_secs(s)),
    );
    vec![
        name(csr).into(),
        age(csr, now),
        signer.into(),
        str_at(csr, &["spec", "username"]).into(),
        requested.into(),
        csr_status(csr).into(),
    ]
}

// ---------------------------------------------------------------------------------------------
// flowcontrol.apiserver.k8s.io

const FLOW_SCHEMA_COLUMNS: &[Column] = &[
    NAME,
    col(
        "PriorityLevel",
        "string",
        "`name` is the name of the priority level configuration being referenced",
    ),
    col(
        "MatchingPrecedence",
        "string",
        "`matchingPrecedence` is used to choose among the FlowSchemas that match a given request.",
    ),
    col(
        "DistinguisherMethod",
        "string",
        "`distinguisherMethod` defines how to compute the flow distinguisher for requests that match this schema.",
    ),
    AGE,
    col(
        "MissingPL",
        "string",
        "references a broken or non-existent PriorityLevelConfiguration",
    ),
];

fn flow_schema_cells(fs: &Value, now: Timestamp) -> Vec<Value> {
    let method = opt_str_at(fs, &["spec", "distinguisherMethod", "type"]).unwrap_or("<none>");
    let missing = arr_at(fs, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == "Dangling")
        .map_or("?", |c| str_at(c, &["status"]));
    vec![
        name(fs).into(),
        str_at(fs, &["spec", "priorityLevelConfiguration", "name"]).into(),
        int_at(fs, &["spec", "matchingPrecedence"]).into(),
        method.into(),
        age(fs, now),
        missing.into(),
    ]
}

const PRIORITY_LEVEL_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        "string",
        "`type` indicates whether this priority level is subject to limitation on request execution.",
    ),
    col(
        "NominalConcurrencyShares",
        "string",
        "`nominalConcurrencyShares` (NCS) contributes to the computation of the NominalConcurrencyLimit (NominalCL) of this level.",
    ),
    col(
        "Queues",
        "string",
        "`queues` is the number of queues for this priority level.",
    ),
    col(
        "HandSize",
        "string",
        "`handSize` is a small positive number that configures the shuffle sharding of requests into queues.",
    ),
    col(
        "QueueLengthLimit",
        "string",
        "`queueLengthLimit` is the maximum number of requests allowed to be waiting in a given queue of this priority level at a time.",
    ),
    AGE,
];

fn priority_level_cells(pl: &Value, now: Timestamp) -> Vec<Value> {
    let none = || Value::from("<none>");
    let (mut ncs, mut queues, mut hand, mut limit) = (none(), none(), none(), none());
    if let Some(limited) = get(pl, &["spec", "limited"]).filter(|l| l.is_object()) {
        ncs = int_at(limited, &["nominalConcurrencyShares"]).into();
        if let Some(q) = get(limited, &["limitResponse", "queuing"]).filter(|q| q.is_object()) {
            queues = int_at(q, &["queues"]).into();
            hand = int_at(q, &["handSize"]).into();
            limit = int_at(q, &["queueLengthLimit"]).into();
        }
    }
    vec![
        name(pl).into(),
        str_at(pl, &["spec", "type"]).into(),
        ncs,
        queues,
        hand,
        limit,
        age(pl, now),
    ]
}

// ---------------------------------------------------------------------------------------------
// apiregistration.k8s.io

const API_SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Service",
        "string",
        "The reference to the service that hosts this API endpoint.",
    ),
    col("Available", "string", "Whether this service is available."),
    AGE,
];

fn api_service_cells(api: &Value, now: Timestamp) -> Vec<Value> {
    let service = match obj_at(api, &["spec", "service"]) {
        Some(_) => format!(
            "{}/{}",
            str_at(api, &["spec", "service", "namespace"]),
            str_at(api, &["spec", "service", "name"])
        ),
        None => "Local".to_owned(),
    };
    let available = arr_at(api, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == "Available")
        .map_or_else(
            || "Unknown".to_owned(),
            |c| match (str_at(c, &["status"]), str_at(c, &["reason"])) {
                ("True", _) => "True".to_owned(),
                (s, "") => s.to_owned(),
                (s, r) => format!("{s} ({r})"),
            },
        );
    vec![
        name(api).into(),
        service.into(),
        available.into(),
        age(api, now),
    ]
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
