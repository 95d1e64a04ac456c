//! Pod, PodSpec and PodTemplateSpec validation, and the restricted Pod update rules.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{Errors, FieldError, Path, items, meta, nonnegative, obj_or_null, quantity, str_of};

const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

const FILE_MODE_ERROR_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";

const UPDATABLE_POD_SPEC_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Pod create and update validation (metadata is validated by the caller).
pub(crate) fn validate_pod(pod: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = obj_or_null(pod, "spec");
    validate_pod_spec(spec, &Path::new("spec"), errs);
    if let Some(old) = old {
        validate_pod_spec_update(spec, obj_or_null(old, "spec"), errs);
    }
}

/// `ValidatePodTemplateSpec`; note upstream reports template labels at `<path>.labels`.
pub(crate) fn validate_pod_template_spec(template: &Value, path: &Path, errs: &mut Errors) {
    let meta_v = obj_or_null(template, "metadata");
    meta::validate_labels(meta_v.get("labels"), &path.child("labels"), errs);
    meta::validate_annotations(meta_v.get("annotations"), &path.child("annotations"), errs);
    let spec = obj_or_null(template, "spec");
    validate_pod_spec(spec, &path.child("spec"), errs);
    if !items(spec, "ephemeralContainers").is_empty() {
        errs.push(FieldError::forbidden(
            &path.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
}

/// `ValidatePodSpec`, in upstream's order.
pub(crate) fn validate_pod_spec(spec: &Value, path: &Path, errs: &mut Errors) {
    let volumes = validate_volumes(items(spec, "volumes"), &path.child("volumes"), errs);
    let containers = items(spec, "containers");
    let cpath = path.child("containers");
    if containers.is_empty() {
        errs.push(FieldError::required(&cpath, ""));
    }
    let mut names = BTreeSet::new();
    for (i, c) in containers.iter().enumerate() {
        let p = cpath.index(i);
        validate_container(c, &volumes, &p, errs);
        let name = str_of(c, "name");
        if !names.insert(name.to_owned()) {
            errs.push(FieldError::duplicate(&p.child("name"), name));
        }
        validate_probe(
            c.get("livenessProbe"),
            &p.child("livenessProbe"),
            true,
            errs,
        );
        validate_probe(
            c.get("readinessProbe"),
            &p.child("readinessProbe"),
            false,
            errs,
        );
        validate_probe(c.get("startupProbe"), &p.child("startupProbe"), true, errs);
    }
    let ipath = path.child("initContainers");
    for (i, c) in items(spec, "initContainers").iter().enumerate() {
        let p = ipath.index(i);
        validate_container(c, &volumes, &p, errs);
        let name = str_of(c, "name");
        if !names.insert(name.to_owned()) {
            errs.push(FieldError::duplicate(&p.child("name"), name));
        }
        let restart = str_of(c, "restartPolicy");
        if !restart.is_empty() && restart != "Always" {
            errs.push(FieldError::not_supported(
                &p.child("restartPolicy"),
                restart,
                &["Always"],
            ));
        }
    }
    validate_restart_policy(
        str_of(spec, "restartPolicy"),
        &path.child("restartPolicy"),
        errs,
    );
    validate_dns_policy(str_of(spec, "dnsPolicy"), &path.child("dnsPolicy"), errs);
    meta::validate_labels(spec.get("nodeSelector"), &path.child("nodeSelector"), errs);
    for key in ["serviceAccountName", "nodeName"] {
        let v = str_of(spec, key);
        if !v.is_empty() {
            for m in meta::is_dns1123_subdomain(v) {
                errs.push(FieldError::invalid(&path.child(key), v, &m));
            }
        }
    }
    if let Some(ads) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64)
        && !(1..=i64::from(i32::MAX)).contains(&ads)
    {
        errs.push(FieldError::invalid(
            &path.child("activeDeadlineSeconds"),
            ads,
            &meta::inclusive_range_error(1, i64::from(i32::MAX)),
        ));
    }
    for key in ["hostname", "subdomain"] {
        let v = str_of(spec, key);
        if !v.is_empty() {
            for m in meta::is_dns1123_label(v) {
                errs.push(FieldError::invalid(&path.child(key), v, &m));
            }
        }
    }
    validate_tolerations(items(spec, "tolerations"), &path.child("tolerations"), errs);
}

fn validate_restart_policy(policy: &str, path: &Path, errs: &mut Errors) {
    match policy {
        "Always" | "OnFailure" | "Never" => {}
        "" => errs.push(FieldError::required(path, "")),
        other => errs.push(FieldError::not_supported(
            path,
            other,
            &["Always", "OnFailure", "Never"],
        )),
    }
}

fn validate_dns_policy(policy: &str, path: &Path, errs: &mut Errors) {
    match policy {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => {}
        "" => errs.push(FieldError::required(path, "")),
        other => errs.push(FieldError::not_supported(
            path,
            other,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )),
    }
}

/// Validates volumes and returns the names of the valid ones (mounts may refer only to those).
fn validate_volumes(volumes: &[Value], path: &Path, errs: &mut Errors) -> BTreeSet<String> {
    let mut valid = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for (i, vol) in volumes.iter().enumerate() {
        let p = path.index(i);
        let mut el = Errors::new();
        validate_volume_source(vol, &p, &mut el);
        let name = str_of(vol, "name");
        let name_path = p.child("name");
        if name.is_empty() {
            el.push(FieldError::required(&name_path, ""));
        } else {
            for m in meta::is_dns1123_label(name) {
                el.push(FieldError::invalid(&name_path, name, &m));
            }
        }
        if seen.contains(name) {
            el.push(FieldError::duplicate(&name_path, name));
        }
        seen.insert(name.to_owned());
        if el.is_empty() {
            valid.insert(name.to_owned());
        }
        errs.extend(el);
    }
    valid
}

fn validate_volume_source(vol: &Value, path: &Path, errs: &mut Errors) {
    let mut count = 0;
    for source in VOLUME_SOURCES {
        let Some(s) = vol.get(*source).filter(|v| !v.is_null()) else {
            continue;
        };
        count += 1;
        let sp = path.child(source);
        if count > 1 {
            errs.push(FieldError::forbidden(
                &sp,
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        let required = match *source {
            "secret" => Some("secretName"),
            "configMap" => Some("name"),
            "hostPath" => Some("path"),
            "persistentVolumeClaim" => Some("claimName"),
            "nfs" => Some("server"),
            _ => None,
        };
        if let Some(key) = required
            && str_of(s, key).is_empty()
        {
            errs.push(FieldError::required(&sp.child(key), ""));
        }
        if let Some(mode) = s.get("defaultMode").and_then(Value::as_i64)
            && !(0..=0o777).contains(&mode)
        {
            errs.push(FieldError::invalid(
                &sp.child("defaultMode"),
                mode,
                FILE_MODE_ERROR_MSG,
            ));
        }
    }
    if count == 0 {
        errs.push(FieldError::required(path, "must specify a volume type"));
    }
}

/// `validateContainerCommon` plus the regular-container checks.
fn validate_container(c: &Value, volumes: &BTreeSet<String>, path: &Path, errs: &mut Errors) {
    let name = str_of(c, "name");
    if name.is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    } else {
        for m in meta::is_dns1123_label(name) {
            errs.push(FieldError::invalid(&path.child("name"), name, &m));
        }
    }
    if str_of(c, "image").is_empty() {
        errs.push(FieldError::required(&path.child("image"), ""));
    }
    match str_of(c, "terminationMessagePolicy") {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(FieldError::required(
            &path.child("terminationMessagePolicy"),
            "",
        )),
        other => errs.push(FieldError::not_supported(
            &path.child("terminationMessagePolicy"),
            other,
            &["File", "FallbackToLogsOnError"],
        )),
    }
    validate_container_ports(items(c, "ports"), &path.child("ports"), errs);
    validate_env(items(c, "env"), &path.child("env"), errs);
    validate_volume_mounts(
        items(c, "volumeMounts"),
        volumes,
        &path.child("volumeMounts"),
        errs,
    );
    match str_of(c, "imagePullPolicy") {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.push(FieldError::required(&path.child("imagePullPolicy"), "")),
        other => errs.push(FieldError::not_supported(
            &path.child("imagePullPolicy"),
            other,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    validate_resources(obj_or_null(c, "resources"), &path.child("resources"), errs);
}

fn validate_container_ports(ports: &[Value], path: &Path, errs: &mut Errors) {
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.index(i);
        let name = str_of(port, "name");
        if !name.is_empty() {
            let msgs = meta::is_valid_port_name(name);
            if !msgs.is_empty() {
                for m in msgs {
                    errs.push(FieldError::invalid(&p.child("name"), name, &m));
                }
            } else if !names.insert(name) {
                errs.push(FieldError::duplicate(&p.child("name"), name));
            }
        }
        let cp = port
            .get("containerPort")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if cp == 0 {
            errs.push(FieldError::required(&p.child("containerPort"), ""));
        } else {
            for m in meta::is_valid_port_num(cp) {
                errs.push(FieldError::invalid(&p.child("containerPort"), cp, &m));
            }
        }
        let hp = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
        if hp != 0 {
            for m in meta::is_valid_port_num(hp) {
                errs.push(FieldError::invalid(&p.child("hostPort"), hp, &m));
            }
        }
        validate_protocol(str_of(port, "protocol"), &p.child("protocol"), errs);
    }
}

pub(crate) fn validate_protocol(protocol: &str, path: &Path, errs: &mut Errors) {
    match protocol {
        "TCP" | "UDP" | "SCTP" => {}
        "" => errs.push(FieldError::required(path, "")),
        other => errs.push(FieldError::not_supported(
            path,
            other,
            &["SCTP", "TCP", "UDP"],
        )),
    }
}

fn validate_env(env: &[Value], path: &Path, errs: &mut Errors) {
    for (i, var) in env.iter().enumerate() {
        let p = path.index(i);
        let name = str_of(var, "name");
        if name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        } else if name
            .chars()
            .any(|c| !c.is_ascii() || c.is_ascii_control() || c == '=')
        {
            // RelaxedEnvironmentVariableValidation is on by default from 1.32.
            errs.push(FieldError::invalid(
                &p.child("name"),
                name,
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            ));
        }
        if var.get("valueFrom").is_some_and(|v| !v.is_null()) && !str_of(var, "value").is_empty() {
            errs.push(FieldError::invalid(
                &p.child("valueFrom"),
                "",
                "may not be specified when `value` is not empty",
            ));
        }
    }
}

fn validate_volume_mounts(
    mounts: &[Value],
    volumes: &BTreeSet<String>,
    path: &Path,
    errs: &mut Errors,
) {
    let mut mount_points = BTreeSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let p = path.index(i);
        let name = str_of(m, "name");
        if name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        }
        if !volumes.contains(name) {
            errs.push(FieldError::not_found(&p.child("name"), name));
        }
        let mount_path = str_of(m, "mountPath");
        if mount_path.is_empty() {
            errs.push(FieldError::required(&p.child("mountPath"), ""));
        }
        if !mount_points.insert(mount_path) {
            errs.push(FieldError::invalid(
                &p.child("mountPath"),
                mount_path,
                "must be unique",
            ));
        }
        let sub_path = str_of(m, "subPath");
        if !sub_path.is_empty() {
            if sub_path.starts_with('/') {
                errs.push(FieldError::invalid(
                    &p.child("subPath"),
                    sub_path,
                    "must be a relative path",
                ));
            }
            if sub_path.split('/').any(|seg| seg == "..") {
                errs.push(FieldError::invalid(
                    &p.child("subPath"),
                    sub_path,
                    "must not contain '..'",
                ));
            }
        }
    }
}

fn is_standard_container_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-")
}

fn validate_resources(res: &Value, path: &Path, errs: &mut Errors) {
    let limits = parse_resource_list(res.get("limits"), &path.child("limits"), errs);
    let req_path = path.child("requests");
    let requests = parse_resource_list(res.get("requests"), &req_path, errs);
    for (name, (req_text, req)) in &requests {
        if let Some((lim_text, lim)) = limits.get(name) {
            let native = !name.contains('/') || name.contains("kubernetes.io/");
            let overcommit = native && !name.starts_with("hugepages-");
            if req != lim && !overcommit {
                errs.push(FieldError::invalid(
                    &req_path,
                    req_text.as_str(),
                    &format!("must be equal to {name} limit of {lim_text}"),
                ));
            } else if req > lim {
                errs.push(FieldError::invalid(
                    &req_path,
                    req_text.as_str(),
                    &format!("must be less than or equal to {name} limit of {lim_text}"),
                ));
            }
        }
    }
}

/// Validates one resource list's names and quantities and returns the parseable entries.
fn parse_resource_list(
    list: Option<&Value>,
    path: &Path,
    errs: &mut Errors,
) -> BTreeMap<String, (String, quantity::Nanos)> {
    let mut out = BTreeMap::new();
    let Some(map) = list.and_then(Value::as_object) else {
        return out;
    };
    for (name, q) in map {
        let p = path.key(name);
        if !name.contains('/') && !is_standard_container_resource(name) {
            errs.push(FieldError::invalid(
                &p,
                name.as_str(),
                "must be a standard resource for containers",
            ));
        }
        let text = match q {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match quantity::parse(&text) {
            Some(n) if n < 0 => errs.push(FieldError::invalid(
                &p,
                text.as_str(),
                meta::IS_NEGATIVE_ERROR_MSG,
            )),
            Some(n) => {
                out.insert(name.clone(), (text, n));
            }
            None => errs.push(FieldError::invalid(
                &p,
                text.as_str(),
                "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            )),
        }
    }
    out
}

fn validate_probe(
    probe: Option<&Value>,
    path: &Path,
    success_must_be_one: bool,
    errs: &mut Errors,
) {
    let Some(probe) = probe.filter(|p| p.is_object()) else {
        return;
    };
    let mut handlers = 0;
    for h in ["exec", "httpGet", "tcpSocket", "grpc"] {
        if probe.get(h).is_some_and(|v| !v.is_null()) {
            handlers += 1;
            if handlers > 1 {
                errs.push(FieldError::forbidden(
                    &path.child(h),
                    "may not specify more than 1 handler type",
                ));
            }
        }
    }
    if handlers == 0 {
        errs.push(FieldError::required(path, "must specify a handler type"));
    }
    for key in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        nonnegative(probe, key, path, errs);
    }
    if success_must_be_one
        && let Some(n) = probe.get("successThreshold").and_then(Value::as_i64)
        && n != 1
    {
        errs.push(FieldError::invalid(
            &path.child("successThreshold"),
            n,
            "must be 1",
        ));
    }
}

fn validate_tolerations(tolerations: &[Value], path: &Path, errs: &mut Errors) {
    for (i, t) in tolerations.iter().enumerate() {
        let p = path.index(i);
        let key = str_of(t, "key");
        let op = str_of(t, "operator");
        let effect = str_of(t, "effect");
        if !key.is_empty() {
            for m in meta::is_qualified_name(key) {
                errs.push(FieldError::invalid(&p.child("key"), key, &m));
            }
        }
        if key.is_empty() && op != "Exists" {
            errs.push(FieldError::invalid(
                &p.child("operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if t.get("tolerationSeconds").is_some_and(|v| !v.is_null()) && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                &p.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match op {
            "Equal" | "" => {
                let value = str_of(t, "value");
                for m in meta::is_valid_label_value(value) {
                    errs.push(FieldError::invalid(&p.child("operator"), value, &m));
                }
            }
            "Exists" => {
                if !str_of(t, "value").is_empty() {
                    errs.push(FieldError::invalid(
                        &p.child("operator"),
                        t.clone(),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                &p.child("operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        match effect {
            "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute" => {}
            other => errs.push(FieldError::not_supported(
                &p.child("effect"),
                other,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            )),
        }
    }
}

/// `ValidatePodUpdate`'s spec rules: only images, activeDeadlineSeconds, added tolerations and a
/// negative grace period turned into 1 may change.
fn validate_pod_spec_update(new: &Value, old: &Value, errs: &mut Errors) {
    let spec_path = Path::new("spec");
    for key in ["containers", "initContainers"] {
        let new_c = items(new, key);
        let old_c = items(old, key);
        let p = spec_path.child(key);
        if new_c.len() != old_c.len() {
            errs.push(FieldError::forbidden(
                &p,
                "pod updates may not add or remove containers",
            ));
            return;
        }
        for (i, c) in new_c.iter().enumerate() {
            let image = str_of(c, "image");
            if image.trim().len() != image.len() {
                errs.push(FieldError::invalid(
                    &p.index(i).child("image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }

    if let Some(old_ads) = old.get("activeDeadlineSeconds").and_then(Value::as_i64) {
        let ads_path = spec_path.child("activeDeadlineSeconds");
        match new.get("activeDeadlineSeconds").and_then(Value::as_i64) {
            None => errs.push(FieldError::invalid(
                &ads_path,
                Value::Null,
                "must not update from a positive integer to nil value",
            )),
            Some(n) if n > old_ads => errs.push(FieldError::invalid(
                &ads_path,
                n,
                &format!("must be less than or equal to previous value of {old_ads}"),
            )),
            Some(_) => {}
        }
    }

    let mut munged = new.clone();
    let Some(m) = munged.as_object_mut() else {
        return;
    };
    for key in ["containers", "initContainers"] {
        if let Some(list) = m.get_mut(key).and_then(Value::as_array_mut) {
            for (c, old_c) in list.iter_mut().zip(items(old, key)) {
                if let Some(c) = c.as_object_mut() {
                    c.insert("image".into(), obj_or_null(old_c, "image").clone());
                }
            }
        }
    }
    restore(m, old, "activeDeadlineSeconds");
    let old_tolerations = items(old, "tolerations");
    let only_added = old_tolerations
        .iter()
        .all(|t| items(new, "tolerations").contains(t));
    if only_added {
        restore(m, old, "tolerations");
    }
    let old_grace = old
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    let new_grace = new
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
        restore(m, old, "terminationGracePeriodSeconds");
    }
    // Scheduling gates may only be removed.
    let old_gates = items(old, "schedulingGates");
    if items(new, "schedulingGates")
        .iter()
        .all(|g| old_gates.contains(g))
    {
        restore(m, old, "schedulingGates");
    }

    if &munged != old {
        errs.push(FieldError::forbidden(
            &spec_path,
            &format!(
                "pod updates may not change fields other than {UPDATABLE_POD_SPEC_FIELDS}\n{}",
                spec_diff(old, &munged)
            ),
        ));
    }
}

/// Puts the old value of `key` (or its absence) into the munged spec.
fn restore(m: &mut serde_json::Map<String, Value>, old: &Value, key: &str) {
    match old.get(key) {
        Some(v) => {
            m.insert(key.to_owned(), v.clone());
        }
        None => {
            m.remove(key);
        }
    }
}

/// A short diff of the top-level spec fields that differ, in the spirit of upstream's cmp.Diff.
fn spec_diff(old: &Value, new: &Value) -> String {
    let mut keys = BTreeSet::new();
    for v in [old, new] {
        if let Some(m) = v.as_object() {
            keys.extend(m.keys().cloned());
        }
    }
    let mut out = String::from("  core.PodSpec{\n");
    for k in keys {
        let (o, n) = (old.get(&k), new.get(&k));
        if o == n {
            continue;
        }
        if let Some(o) = o {
            out.push_str(&format!("- \t{k}: {o},\n"));
        }
        if let Some(n) = n {
            out.push_str(&format!("+ \t{k}: {n},\n"));
        }
    }
    out.push_str("  }\n");
    out
}
