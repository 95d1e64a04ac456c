//! Validation of core kinds other than pods and workloads: Service, ConfigMap, Secret,
//! PersistentVolume and PersistentVolumeClaim.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Errors, FieldError, Path, items, meta, obj_or_null, pod, str_of};

/// `core.MaxSecretSize`, also the ConfigMap limit.
const MAX_SECRET_SIZE: usize = 1024 * 1024;
const NODE_PORT_RANGE: (i64, i64) = (30000, 32767);
const IMMUTABLE_WHEN_SET: &str = "field is immutable when `immutable` is set";

pub(crate) fn validate_service(svc: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = obj_or_null(svc, "spec");
    let spath = Path::new("spec");
    let svc_type = str_of(spec, "type");
    let headless = str_of(spec, "clusterIP") == "None";
    let ports = items(spec, "ports");
    let ports_path = spath.child("ports");

    if svc_type == "ExternalName" {
        let name = str_of(spec, "externalName");
        if name.is_empty() {
            errs.push(FieldError::required(&spath.child("externalName"), ""));
        } else {
            let trimmed = name.strip_suffix('.').unwrap_or(name);
            let msgs = meta::is_dns1123_subdomain(trimmed);
            if !msgs.is_empty() {
                errs.push(FieldError::invalid(
                    &spath.child("externalName"),
                    trimmed,
                    &msgs.join(","),
                ));
            } else if trimmed.split('.').count() < 2 {
                errs.push(FieldError::invalid(
                    &spath.child("externalName"),
                    trimmed,
                    "should be a domain with at least two segments separated by dots",
                ));
            }
        }
    }

    if ports.is_empty() && !headless && svc_type != "ExternalName" {
        errs.push(FieldError::required(&ports_path, ""));
    }
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = ports_path.index(i);
        let name = str_of(port, "name");
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        } else if !name.is_empty() {
            for m in meta::is_dns1123_label(name) {
                errs.push(FieldError::invalid(&p.child("name"), name, &m));
            }
            if !names.insert(name) {
                errs.push(FieldError::duplicate(&p.child("name"), name));
            }
        }
        let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
        for m in meta::is_valid_port_num(number) {
            errs.push(FieldError::invalid(&p.child("port"), number, &m));
        }
        pod::validate_protocol(str_of(port, "protocol"), &p.child("protocol"), errs);
        match port.get("targetPort") {
            Some(Value::Number(n)) => {
                let n = n.as_i64().unwrap_or(0);
                for m in meta::is_valid_port_num(n) {
                    errs.push(FieldError::invalid(&p.child("targetPort"), n, &m));
                }
            }
            Some(Value::String(s)) => {
                for m in meta::is_valid_port_name(s) {
                    errs.push(FieldError::invalid(&p.child("targetPort"), s.as_str(), &m));
                }
            }
            _ => {}
        }
    }

    match svc_type {
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName" => {}
        "" => errs.push(FieldError::required(&spath.child("type"), "")),
        other => errs.push(FieldError::not_supported(
            &spath.child("type"),
            other,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )),
    }
    match str_of(spec, "sessionAffinity") {
        "None" | "ClientIP" => {}
        "" => errs.push(FieldError::required(&spath.child("sessionAffinity"), "")),
        other => errs.push(FieldError::not_supported(
            &spath.child("sessionAffinity"),
            other,
            &["ClientIP", "None"],
        )),
    }
    if svc_type == "ClusterIP" {
        for (i, port) in ports.iter().enumerate() {
            if port.get("nodePort").and_then(Value::as_i64).unwrap_or(0) != 0 {
                errs.push(FieldError::forbidden(
                    &ports_path.index(i).child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    let mut seen_ports: Vec<(i64, &str)> = Vec::new();
    let mut seen_node_ports: Vec<(i64, &str)> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let p = ports_path.index(i);
        let key = (
            port.get("port").and_then(Value::as_i64).unwrap_or(0),
            str_of(port, "protocol"),
        );
        if seen_ports.contains(&key) {
            errs.push(FieldError::duplicate(
                &p,
                serde_json::json!({"port": key.0, "protocol": key.1}),
            ));
        }
        seen_ports.push(key);
        let node_port = port.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
        if node_port != 0 {
            let np_key = (node_port, str_of(port, "protocol"));
            if seen_node_ports.contains(&np_key) {
                errs.push(FieldError::duplicate(&p.child("nodePort"), node_port));
            }
            seen_node_ports.push(np_key);
            if svc_type != "ClusterIP"
                && !(NODE_PORT_RANGE.0..=NODE_PORT_RANGE.1).contains(&node_port)
            {
                errs.push(FieldError::invalid(
                    &p.child("nodePort"),
                    node_port,
                    &format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        NODE_PORT_RANGE.0, NODE_PORT_RANGE.1
                    ),
                ));
            }
        }
    }
    if svc_type != "ExternalName" {
        meta::validate_labels(spec.get("selector"), &spath.child("selector"), errs);
    }
    for (key, valid) in [
        ("externalTrafficPolicy", ["Cluster", "Local"]),
        ("internalTrafficPolicy", ["Cluster", "Local"]),
    ] {
        let v = str_of(spec, key);
        if !v.is_empty() && !valid.contains(&v) {
            errs.push(FieldError::not_supported(&spath.child(key), v, &valid));
        }
    }
    let policy = str_of(spec, "ipFamilyPolicy");
    if !policy.is_empty()
        && !["SingleStack", "PreferDualStack", "RequireDualStack"].contains(&policy)
    {
        errs.push(FieldError::not_supported(
            &spath.child("ipFamilyPolicy"),
            policy,
            &["PreferDualStack", "RequireDualStack", "SingleStack"],
        ));
    }

    if let Some(old) = old {
        let old_spec = obj_or_null(old, "spec");
        let old_type = str_of(old_spec, "type");
        // ClusterIPs are fixed once allocated, except when moving to or from ExternalName.
        if old_type != "ExternalName" && svc_type != "ExternalName" {
            let old_ips = items(old_spec, "clusterIPs");
            let new_ips = items(spec, "clusterIPs");
            if let (Some(o), Some(n)) = (old_ips.first(), new_ips.first())
                && o != n
            {
                errs.push(FieldError::invalid(
                    &spath.child("clusterIPs").index(0),
                    Value::Array(new_ips.to_vec()),
                    "may not change once set",
                ));
            }
        }
    }
}

pub(crate) fn validate_config_map(cm: &Value, old: Option<&Value>, errs: &mut Errors) {
    let mut total = 0usize;
    let data = cm.get("data").and_then(Value::as_object);
    let binary = cm.get("binaryData").and_then(Value::as_object);
    let data_path = Path::new("data");
    for (k, v) in data.into_iter().flatten() {
        for m in meta::is_config_map_key(k) {
            errs.push(FieldError::invalid(&data_path.key(k), k.as_str(), &m));
        }
        if binary.is_some_and(|b| b.contains_key(k)) {
            errs.push(FieldError::invalid(
                &data_path.key(k),
                k.as_str(),
                "duplicate of key present in binaryData",
            ));
        }
        total += v.as_str().map_or(0, str::len);
    }
    let binary_path = Path::new("binaryData");
    for (k, v) in binary.into_iter().flatten() {
        for m in meta::is_config_map_key(k) {
            errs.push(FieldError::invalid(&binary_path.key(k), k.as_str(), &m));
        }
        total += decoded_len(v);
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long(&Path::new(""), MAX_SECRET_SIZE));
    }
    if let Some(old) = old {
        validate_immutable_data(cm, old, &["data", "binaryData"], errs);
    }
}

/// Byte length of a base64 field once decoded (what upstream counts for `[]byte` values).
fn decoded_len(v: &Value) -> usize {
    let s = v.as_str().unwrap_or_default().trim_end_matches('=');
    s.len() * 3 / 4
}

fn validate_immutable_data(obj: &Value, old: &Value, keys: &[&str], errs: &mut Errors) {
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if obj.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden(
            &Path::new("immutable"),
            IMMUTABLE_WHEN_SET,
        ));
    }
    for key in keys {
        if obj_or_null(obj, key) != obj_or_null(old, key) {
            errs.push(FieldError::forbidden(&Path::new(key), IMMUTABLE_WHEN_SET));
        }
    }
}

pub(crate) fn validate_secret(secret: &Value, old: Option<&Value>, errs: &mut Errors) {
    let data_path = Path::new("data");
    let data = secret.get("data").and_then(Value::as_object);
    let mut total = 0usize;
    for (k, v) in data.into_iter().flatten() {
        for m in meta::is_config_map_key(k) {
            errs.push(FieldError::invalid(&data_path.key(k), k.as_str(), &m));
        }
        total += decoded_len(v);
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long(&data_path, MAX_SECRET_SIZE));
    }
    let has = |k: &str| data.is_some_and(|d| d.contains_key(k));
    match str_of(secret, "type") {
        "kubernetes.io/service-account-token" => {
            let annotated = secret
                .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty());
            if !annotated {
                errs.push(FieldError::required(
                    &Path::new("metadata")
                        .child("annotations")
                        .key("kubernetes.io/service-account.name"),
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" if !has(".dockercfg") => {
            errs.push(FieldError::required(&data_path.key(".dockercfg"), ""));
        }
        "kubernetes.io/dockerconfigjson" if !has(".dockerconfigjson") => {
            errs.push(FieldError::required(
                &data_path.key(".dockerconfigjson"),
                "",
            ));
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            // Upstream builds this path from a literal "data[%s]"; kept for identical output.
            let odd = Path::new("data[%s]");
            errs.push(FieldError::required(&odd.key("username"), ""));
            errs.push(FieldError::required(&odd.key("password"), ""));
        }
        "kubernetes.io/ssh-auth" if !has("ssh-privatekey") => {
            errs.push(FieldError::required(&data_path.key("ssh-privatekey"), ""));
        }
        "kubernetes.io/tls" => {
            for key in ["tls.key", "tls.crt"] {
                if !has(key) {
                    errs.push(FieldError::required(&data_path.key(key), ""));
                }
            }
        }
        _ => {}
    }
    if let Some(old) = old {
        let new_type = str_of(secret, "type");
        if new_type != str_of(old, "type") {
            errs.push(FieldError::invalid(
                &Path::new("type"),
                new_type,
                meta::FIELD_IMMUTABLE_ERROR_MSG,
            ));
        }
        validate_immutable_data(secret, old, &["data"], errs);
    }
}

const ACCESS_MODES: [&str; 4] = [
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

fn validate_access_modes(spec: &Value, spath: &Path, errs: &mut Errors) {
    let modes = items(spec, "accessModes");
    let mpath = spath.child("accessModes");
    if modes.is_empty() {
        errs.push(FieldError::required(
            &mpath,
            "at least 1 access mode is required",
        ));
    }
    for m in modes {
        let mode = m.as_str().unwrap_or_default();
        if !ACCESS_MODES.contains(&mode) {
            errs.push(FieldError::not_supported(&mpath, mode, &ACCESS_MODES));
        }
    }
    if modes.iter().any(|m| m == "ReadWriteOncePod") && modes.len() > 1 {
        errs.push(FieldError::forbidden(
            &mpath,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

pub(crate) fn validate_persistent_volume(pv: &Value, errs: &mut Errors) {
    let spec = obj_or_null(pv, "spec");
    let spath = Path::new("spec");
    validate_access_modes(spec, &spath, errs);
    let capacity = spec.get("capacity").and_then(Value::as_object);
    if capacity.is_none_or(|c| c.is_empty()) {
        errs.push(FieldError::required(&spath.child("capacity"), ""));
    }
    match str_of(spec, "persistentVolumeReclaimPolicy") {
        "" | "Delete" | "Recycle" | "Retain" => {}
        other => errs.push(FieldError::not_supported(
            &spath.child("persistentVolumeReclaimPolicy"),
            other,
            &["Delete", "Recycle", "Retain"],
        )),
    }
    const PV_SOURCES: [&str; 9] = [
        "hostPath",
        "local",
        "nfs",
        "csi",
        "iscsi",
        "fc",
        "cephfs",
        "rbd",
        "awsElasticBlockStore",
    ];
    let sources = PV_SOURCES
        .iter()
        .filter(|s| spec.get(**s).is_some_and(|v| !v.is_null()))
        .count();
    if sources == 0 {
        errs.push(FieldError::required(&spath, "must specify a volume type"));
    }
    match str_of(spec, "volumeMode") {
        "" | "Block" | "Filesystem" => {}
        other => errs.push(FieldError::not_supported(
            &spath.child("volumeMode"),
            other,
            &["Block", "Filesystem"],
        )),
    }
}

pub(crate) fn validate_persistent_volume_claim(
    pvc: &Value,
    old: Option<&Value>,
    errs: &mut Errors,
) {
    let spec = obj_or_null(pvc, "spec");
    let spath = Path::new("spec");
    validate_access_modes(spec, &spath, errs);
    let storage = spec.pointer("/resources/requests/storage");
    if storage.is_none_or(Value::is_null) {
        errs.push(FieldError::required(
            &spath.child("resources").key("storage"),
            "",
        ));
    }
    match str_of(spec, "volumeMode") {
        "" | "Block" | "Filesystem" => {}
        other => errs.push(FieldError::not_supported(
            &spath.child("volumeMode"),
            other,
            &["Block", "Filesystem"],
        )),
    }
    if let Some(old) = old {
        let old_spec = obj_or_null(old, "spec");
        let mut munged = spec.clone();
        if let Some(m) = munged.as_object_mut() {
            // Bound claims may grow and change their class; the binder fills volumeName.
            for key in ["resources", "volumeAttributesClassName", "volumeName"] {
                match old_spec.get(key) {
                    Some(v) => m.insert(key.to_owned(), v.clone()),
                    None => m.remove(key),
                };
            }
            if old_spec.get("volumeName").is_none_or(Value::is_null)
                && let Some(v) = spec.get("volumeName")
            {
                m.insert("volumeName".into(), v.clone());
            }
        }
        let mut old_cmp = old_spec.clone();
        if let (Some(o), Some(v)) = (old_cmp.as_object_mut(), spec.get("volumeName"))
            && old_spec.get("volumeName").is_none_or(Value::is_null)
        {
            o.insert("volumeName".into(), v.clone());
        }
        if munged != old_cmp {
            errs.push(FieldError::forbidden(
                &spath,
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ));
        }
    }
}
