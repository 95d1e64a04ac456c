//! Tests of the protobuf decoder: real kubectl 1.32 bodies, k8s-pb-encoded objects, errors.

use std::collections::BTreeMap;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message as _;
use serde_json::{Value, json};

use super::*;

/// The body client-go sends for `object`: magic, then `runtime.Unknown` with the object as `raw`
/// (contentEncoding/contentType written empty, as Go writes non-pointer strings).
fn envelope(api_version: &str, kind: &str, object: &impl prost::Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(object.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = MAGIC.to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

fn s(text: &str) -> Option<String> {
    Some(text.to_owned())
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|&i| i.to_owned()).collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn quantity(text: &str) -> Quantity {
    Quantity { string: s(text) }
}

fn int_port(port: i32) -> IntOrString {
    IntOrString {
        r#type: Some(0),
        int_val: Some(port),
        str_val: Some(String::new()),
    }
}

fn str_port(name: &str) -> IntOrString {
    IntOrString {
        r#type: Some(1),
        int_val: Some(0),
        str_val: s(name),
    }
}

/// ObjectMeta as Go writes a fresh object's: the zero creationTimestamp is an empty message.
fn object_meta(name: &str, labels: &[(&str, &str)]) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: s(name),
        labels: map(labels),
        creation_timestamp: Some(meta::Time::default()),
        ..Default::default()
    }
}

fn decoded(body: &[u8]) -> Value {
    match decode(body) {
        Ok(value) => value,
        Err(e) => panic!("decode failed: {e}"),
    }
}

/// A body captured from `kubectl.1.32 create ...` and the JSON `--dry-run=client -o json`
/// printed for the same command.
macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!("../../tests/fixtures/protobuf/", $name, ".bin")).as_slice(),
            include_str!(concat!("../../tests/fixtures/protobuf/", $name, ".json")),
        )
    };
}

#[test]
fn real_kubectl_create_bodies_decode_to_the_dry_run_json() {
    let fixtures = [
        fixture!("namespace"),
        fixture!("deployment"),
        fixture!("deployment-ports"),
        fixture!("configmap"),
        fixture!("secret"),
        fixture!("secret-tls-like"),
        fixture!("service"),
        fixture!("service-nodeport"),
        fixture!("job"),
        fixture!("cronjob"),
        fixture!("serviceaccount"),
        fixture!("role"),
        fixture!("rolebinding"),
        fixture!("clusterrole"),
        fixture!("clusterrolebinding"),
        fixture!("priorityclass"),
        fixture!("pdb"),
        fixture!("quota"),
        fixture!("ingress"),
        fixture!("deploy-multi"),
        fixture!("svc-lb"),
        fixture!("svc-ext"),
        fixture!("svc-headless"),
        fixture!("secret-file"),
        fixture!("cm-file"),
        fixture!("rb-cluster"),
        fixture!("cr-agg"),
        fixture!("cr-res"),
        fixture!("pdb-max"),
        fixture!("quota-plain"),
        fixture!("ing-default"),
        fixture!("pc-global"),
    ];
    let mut failures = Vec::new();
    for (name, body, expected) in fixtures {
        let expected: Value = serde_json::from_str(expected).expect("fixture JSON parses");
        match decode(body) {
            Ok(actual) if actual == expected => {}
            Ok(actual) => failures.push(format!(
                "{name}:\n got {}\nwant {}",
                serde_json::to_string(&actual).expect("json"),
                serde_json::to_string(&expected).expect("json")
            )),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn real_kubectl_auth_can_i_body_decodes_with_allowed_false_status() {
    let body = include_bytes!("../../tests/fixtures/protobuf/cani.bin");
    assert_eq!(
        decoded(body),
        json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "metadata": {"creationTimestamp": null},
            "spec": {"resourceAttributes": {
                "namespace": "default", "verb": "create", "resource": "pods", "subresource": "log"
            }},
            "status": {"allowed": false}
        })
    );
}

#[test]
fn real_kubectl_drain_delete_options_keep_a_zero_grace_period() {
    let body = include_bytes!("../../tests/fixtures/protobuf/drain-delete-grace0.bin");
    assert_eq!(
        decoded(body),
        json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0})
    );
    let body = include_bytes!("../../tests/fixtures/protobuf/drain-delete.bin");
    assert_eq!(
        decoded(body),
        json!({"apiVersion": "v1", "kind": "DeleteOptions"})
    );
}

/// A Deployment with a full pod template, every nested type exercised once.
fn full_deployment() -> apps::Deployment {
    let container = core::Container {
        name: s("app"),
        image: s("nginx:1.27"),
        command: strings(&["nginx"]),
        args: strings(&["-g", "daemon off;"]),
        working_dir: Some(String::new()),
        ports: vec![core::ContainerPort {
            name: s("http"),
            container_port: Some(80),
            protocol: s("TCP"),
            host_port: Some(0),
            host_ip: Some(String::new()),
        }],
        env: vec![
            core::EnvVar {
                name: s("A"),
                value: s("1"),
                value_from: None,
            },
            core::EnvVar {
                name: s("POD"),
                value: Some(String::new()),
                value_from: Some(core::EnvVarSource {
                    field_ref: Some(core::ObjectFieldSelector {
                        api_version: s("v1"),
                        field_path: s("metadata.name"),
                    }),
                    ..Default::default()
                }),
            },
            core::EnvVar {
                name: s("KEY"),
                value: None,
                value_from: Some(core::EnvVarSource {
                    secret_key_ref: Some(core::SecretKeySelector {
                        local_object_reference: Some(core::LocalObjectReference { name: s("s") }),
                        key: s("k"),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
            },
        ],
        env_from: vec![core::EnvFromSource {
            prefix: Some(String::new()),
            config_map_ref: Some(core::ConfigMapEnvSource {
                local_object_reference: Some(core::LocalObjectReference { name: s("cm") }),
                optional: None,
            }),
            secret_ref: None,
        }],
        resources: Some(core::ResourceRequirements {
            limits: [("cpu", "500m"), ("memory", "128Mi")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), quantity(v)))
                .collect(),
            requests: [("cpu".to_owned(), quantity("250m"))].into_iter().collect(),
            claims: vec![],
        }),
        volume_mounts: vec![core::VolumeMount {
            name: s("cfg"),
            read_only: Some(true),
            mount_path: s("/etc/cfg"),
            sub_path: Some(String::new()),
            ..Default::default()
        }],
        liveness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                http_get: Some(core::HttpGetAction {
                    path: s("/healthz"),
                    port: Some(str_port("http")),
                    host: Some(String::new()),
                    scheme: s("HTTP"),
                    http_headers: vec![core::HttpHeader {
                        name: s("X-Probe"),
                        value: Some(String::new()),
                    }],
                }),
                ..Default::default()
            }),
            initial_delay_seconds: Some(5),
            timeout_seconds: Some(0),
            period_seconds: Some(10),
            ..Default::default()
        }),
        readiness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                exec: Some(core::ExecAction {
                    command: strings(&["cat", "/tmp/ready"]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        startup_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                tcp_socket: Some(core::TcpSocketAction {
                    port: Some(int_port(80)),
                    host: None,
                }),
                ..Default::default()
            }),
            termination_grace_period_seconds: Some(0),
            ..Default::default()
        }),
        lifecycle: Some(core::Lifecycle {
            pre_stop: Some(core::LifecycleHandler {
                sleep: Some(core::SleepAction { seconds: Some(5) }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        termination_message_path: s("/dev/termination-log"),
        image_pull_policy: s("IfNotPresent"),
        security_context: Some(core::SecurityContext {
            capabilities: Some(core::Capabilities {
                add: vec![],
                drop: strings(&["ALL"]),
            }),
            run_as_user: Some(1000),
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            seccomp_profile: Some(core::SeccompProfile {
                r#type: s("RuntimeDefault"),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        stdin: Some(false),
        tty: Some(false),
        ..Default::default()
    };
    let volume = |name: &str, source: core::VolumeSource| core::Volume {
        name: s(name),
        volume_source: Some(source),
    };
    let pod_spec = core::PodSpec {
        volumes: vec![
            volume(
                "cfg",
                core::VolumeSource {
                    config_map: Some(core::ConfigMapVolumeSource {
                        local_object_reference: Some(core::LocalObjectReference { name: s("cm") }),
                        items: vec![core::KeyToPath {
                            key: s("a"),
                            path: s("a.txt"),
                            mode: Some(0o600),
                        }],
                        default_mode: Some(0o644),
                        optional: None,
                    }),
                    ..Default::default()
                },
            ),
            volume(
                "sec",
                core::VolumeSource {
                    secret: Some(core::SecretVolumeSource {
                        secret_name: s("s"),
                        optional: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ),
            volume(
                "tmp",
                core::VolumeSource {
                    empty_dir: Some(core::EmptyDirVolumeSource {
                        medium: s("Memory"),
                        size_limit: Some(quantity("64Mi")),
                    }),
                    ..Default::default()
                },
            ),
            volume(
                "scratch",
                core::VolumeSource {
                    empty_dir: Some(core::EmptyDirVolumeSource {
                        medium: Some(String::new()),
                        size_limit: None,
                    }),
                    ..Default::default()
                },
            ),
            volume(
                "host",
                core::VolumeSource {
                    host_path: Some(core::HostPathVolumeSource {
                        path: s("/var/log"),
                        r#type: s("Directory"),
                    }),
                    ..Default::default()
                },
            ),
            volume(
                "data",
                core::VolumeSource {
                    persistent_volume_claim: Some(core::PersistentVolumeClaimVolumeSource {
                        claim_name: s("pvc"),
                        read_only: Some(false),
                    }),
                    ..Default::default()
                },
            ),
            volume(
                "proj",
                core::VolumeSource {
                    projected: Some(core::ProjectedVolumeSource {
                        sources: vec![
                            core::VolumeProjection {
                                service_account_token: Some(core::ServiceAccountTokenProjection {
                                    audience: Some(String::new()),
                                    expiration_seconds: Some(3600),
                                    path: s("token"),
                                }),
                                ..Default::default()
                            },
                            core::VolumeProjection {
                                downward_api: Some(core::DownwardAPIProjection {
                                    items: vec![core::DownwardAPIVolumeFile {
                                        path: s("labels"),
                                        field_ref: Some(core::ObjectFieldSelector {
                                            api_version: s("v1"),
                                            field_path: s("metadata.labels"),
                                        }),
                                        ..Default::default()
                                    }],
                                }),
                                ..Default::default()
                            },
                        ],
                        default_mode: Some(420),
                    }),
                    ..Default::default()
                },
            ),
        ],
        init_containers: vec![core::Container {
            name: s("init"),
            image: s("busybox"),
            resources: Some(core::ResourceRequirements::default()),
            ..Default::default()
        }],
        containers: vec![container],
        restart_policy: s("Always"),
        termination_grace_period_seconds: Some(30),
        dns_policy: s("ClusterFirst"),
        node_selector: map(&[("disktype", "ssd")]),
        service_account_name: s("sa"),
        host_network: Some(false),
        security_context: Some(core::PodSecurityContext {
            fs_group: Some(2000),
            supplemental_groups: vec![1, 2],
            sysctls: vec![core::Sysctl {
                name: s("net.core.somaxconn"),
                value: s("1024"),
            }],
            ..Default::default()
        }),
        image_pull_secrets: vec![core::LocalObjectReference { name: s("regcred") }],
        affinity: Some(core::Affinity {
            node_affinity: Some(core::NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(core::NodeSelector {
                    node_selector_terms: vec![core::NodeSelectorTerm {
                        match_expressions: vec![core::NodeSelectorRequirement {
                            key: s("zone"),
                            operator: s("In"),
                            values: strings(&["a", "b"]),
                        }],
                        match_fields: vec![],
                    }],
                }),
                preferred_during_scheduling_ignored_during_execution: vec![],
            }),
            pod_anti_affinity: Some(core::PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: vec![
                    core::WeightedPodAffinityTerm {
                        weight: Some(100),
                        pod_affinity_term: Some(core::PodAffinityTerm {
                            label_selector: Some(meta::LabelSelector {
                                match_labels: map(&[("app", "web")]),
                                match_expressions: vec![meta::LabelSelectorRequirement {
                                    key: s("tier"),
                                    operator: s("Exists"),
                                    values: vec![],
                                }],
                            }),
                            topology_key: s("kubernetes.io/hostname"),
                            ..Default::default()
                        }),
                    },
                ],
                ..Default::default()
            }),
            pod_affinity: None,
        }),
        scheduler_name: s("default-scheduler"),
        tolerations: vec![
            core::Toleration {
                key: s("node-role.kubernetes.io/control-plane"),
                operator: s("Exists"),
                value: Some(String::new()),
                effect: s("NoSchedule"),
                toleration_seconds: None,
            },
            core::Toleration {
                key: s("k"),
                operator: s("Equal"),
                value: s("v"),
                effect: s("NoExecute"),
                toleration_seconds: Some(300),
            },
        ],
        priority: Some(0),
        enable_service_links: Some(false),
        topology_spread_constraints: vec![core::TopologySpreadConstraint {
            max_skew: Some(1),
            topology_key: s("zone"),
            when_unsatisfiable: s("DoNotSchedule"),
            ..Default::default()
        }],
        ..Default::default()
    };
    apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            namespace: s("default"),
            annotations: map(&[("note", "x")]),
            ..object_meta("web", &[("app", "web")])
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(3),
            selector: Some(meta::LabelSelector {
                match_labels: map(&[("app", "web")]),
                match_expressions: vec![],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(object_meta("", &[("app", "web")])),
                spec: Some(pod_spec),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: Some(str_port("25%")),
                    max_surge: Some(int_port(1)),
                }),
            }),
            min_ready_seconds: Some(0),
            revision_history_limit: Some(0),
            paused: Some(false),
            progress_deadline_seconds: None,
        }),
        status: Some(apps::DeploymentStatus::default()),
    }
}

#[test]
fn deployment_with_full_pod_template_decodes_with_go_json_presence_rules() {
    let body = envelope("apps/v1", "Deployment", &full_deployment());
    let expected = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "creationTimestamp": null,
            "labels": {"app": "web"},
            "annotations": {"note": "x"}
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                "spec": {
                    "volumes": [
                        {"name": "cfg", "configMap": {
                            "name": "cm", "items": [{"key": "a", "path": "a.txt", "mode": 384}],
                            "defaultMode": 420
                        }},
                        {"name": "sec", "secret": {"secretName": "s", "optional": true}},
                        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                        {"name": "scratch", "emptyDir": {}},
                        {"name": "host", "hostPath": {"path": "/var/log", "type": "Directory"}},
                        {"name": "data", "persistentVolumeClaim": {"claimName": "pvc"}},
                        {"name": "proj", "projected": {
                            "sources": [
                                {"serviceAccountToken": {"expirationSeconds": 3600, "path": "token"}},
                                {"downwardAPI": {"items": [{
                                    "path": "labels",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels"}
                                }]}}
                            ],
                            "defaultMode": 420
                        }}
                    ],
                    "initContainers": [{"name": "init", "image": "busybox", "resources": {}}],
                    "containers": [{
                        "name": "app",
                        "image": "nginx:1.27",
                        "command": ["nginx"],
                        "args": ["-g", "daemon off;"],
                        "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                        "envFrom": [{"configMapRef": {"name": "cm"}}],
                        "env": [
                            {"name": "A", "value": "1"},
                            {"name": "POD", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                            {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": false}}}
                        ],
                        "resources": {
                            "limits": {"cpu": "500m", "memory": "128Mi"},
                            "requests": {"cpu": "250m"}
                        },
                        "volumeMounts": [{"name": "cfg", "readOnly": true, "mountPath": "/etc/cfg"}],
                        "livenessProbe": {
                            "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP",
                                        "httpHeaders": [{"name": "X-Probe", "value": ""}]},
                            "initialDelaySeconds": 5,
                            "periodSeconds": 10
                        },
                        "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}},
                        "startupProbe": {"tcpSocket": {"port": 80}, "terminationGracePeriodSeconds": 0},
                        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
                        "terminationMessagePath": "/dev/termination-log",
                        "imagePullPolicy": "IfNotPresent",
                        "securityContext": {
                            "capabilities": {"drop": ["ALL"]},
                            "runAsUser": 1000,
                            "runAsNonRoot": true,
                            "readOnlyRootFilesystem": true,
                            "allowPrivilegeEscalation": false,
                            "seccompProfile": {"type": "RuntimeDefault"}
                        }
                    }],
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": 30,
                    "dnsPolicy": "ClusterFirst",
                    "nodeSelector": {"disktype": "ssd"},
                    "serviceAccountName": "sa",
                    "securityContext": {
                        "supplementalGroups": [1, 2],
                        "fsGroup": 2000,
                        "sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]
                    },
                    "imagePullSecrets": [{"name": "regcred"}],
                    "affinity": {
                        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchExpressions": [
                                {"key": "zone", "operator": "In", "values": ["a", "b"]}
                            ]}]
                        }},
                        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                            "weight": 100,
                            "podAffinityTerm": {
                                "labelSelector": {
                                    "matchLabels": {"app": "web"},
                                    "matchExpressions": [{"key": "tier", "operator": "Exists"}]
                                },
                                "topologyKey": "kubernetes.io/hostname"
                            }
                        }]}
                    },
                    "schedulerName": "default-scheduler",
                    "tolerations": [
                        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
                        {"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute", "tolerationSeconds": 300}
                    ],
                    "priority": 0,
                    "enableServiceLinks": false,
                    "topologySpreadConstraints": [
                        {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}
                    ]
                }
            },
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}
            },
            "revisionHistoryLimit": 0
        },
        "status": {}
    });
    assert_eq!(decoded(&body), expected);
}

fn time(seconds: i64) -> meta::Time {
    meta::Time {
        seconds: Some(seconds),
        nanos: Some(0),
    }
}

/// 2024-05-01T10:00:00Z
const T0: i64 = 1_714_557_600;

#[test]
fn pod_status_times_ips_and_container_statuses_decode_like_go() {
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            namespace: s("default"),
            uid: s("0b1c6c3e-4f3a-4f57-9a35-2f1e3c0d9a11"),
            resource_version: s("42"),
            generation: Some(0),
            creation_timestamp: Some(time(T0)),
            deletion_timestamp: Some(time(T0 + 60)),
            deletion_grace_period_seconds: Some(30),
            owner_references: vec![meta::OwnerReference {
                api_version: s("apps/v1"),
                kind: s("ReplicaSet"),
                name: s("web-6d4b"),
                uid: s("u1"),
                controller: Some(true),
                block_owner_deletion: None,
            }],
            finalizers: strings(&["example.com/f"]),
            managed_fields: vec![meta::ManagedFieldsEntry {
                manager: s("kubectl-create"),
                operation: s("Update"),
                api_version: s("v1"),
                time: Some(time(T0)),
                fields_type: s("FieldsV1"),
                fields_v1: Some(meta::FieldsV1 {
                    raw: Some(br#"{"f:metadata":{"f:labels":{".":{}}}}"#.to_vec()),
                }),
                subresource: Some(String::new()),
            }],
            ..object_meta("web-6d4b-x", &[])
        }),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: s("c"),
                image: s("busybox"),
                ..Default::default()
            }],
            node_name: s("n1"),
            ..Default::default()
        }),
        status: Some(core::PodStatus {
            phase: s("Running"),
            conditions: vec![core::PodCondition {
                r#type: s("Ready"),
                status: s("True"),
                last_probe_time: Some(meta::Time::default()),
                last_transition_time: Some(time(T0 + 5)),
                reason: Some(String::new()),
                message: Some(String::new()),
                observed_generation: None,
            }],
            host_ip: s("10.0.0.1"),
            host_ips: vec![core::HostIp { ip: s("10.0.0.1") }],
            pod_ip: s("10.244.0.5"),
            pod_ips: vec![core::PodIp {
                ip: s("10.244.0.5"),
            }],
            start_time: Some(time(T0 + 1)),
            container_statuses: vec![core::ContainerStatus {
                name: s("c"),
                state: Some(core::ContainerState {
                    running: Some(core::ContainerStateRunning {
                        started_at: Some(time(T0 + 3)),
                    }),
                    ..Default::default()
                }),
                last_state: Some(core::ContainerState::default()),
                ready: Some(true),
                restart_count: Some(0),
                image: s("docker.io/library/busybox:latest"),
                image_id: s("sha256:abc"),
                container_id: s("containerd://123"),
                started: Some(true),
                ..Default::default()
            }],
            qos_class: s("BestEffort"),
            ..Default::default()
        }),
    };
    let expected = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-6d4b-x",
            "namespace": "default",
            "uid": "0b1c6c3e-4f3a-4f57-9a35-2f1e3c0d9a11",
            "resourceVersion": "42",
            "creationTimestamp": "2024-05-01T10:00:00Z",
            "deletionTimestamp": "2024-05-01T10:01:00Z",
            "deletionGracePeriodSeconds": 30,
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-6d4b", "uid": "u1",
                "controller": true
            }],
            "finalizers": ["example.com/f"],
            "managedFields": [{
                "manager": "kubectl-create",
                "operation": "Update",
                "apiVersion": "v1",
                "time": "2024-05-01T10:00:00Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}}}}
            }]
        },
        "spec": {
            "containers": [{"name": "c", "image": "busybox", "resources": {}}],
            "nodeName": "n1"
        },
        "status": {
            "phase": "Running",
            "conditions": [{
                "type": "Ready", "status": "True", "lastProbeTime": null,
                "lastTransitionTime": "2024-05-01T10:00:05Z"
            }],
            "hostIP": "10.0.0.1",
            "hostIPs": [{"ip": "10.0.0.1"}],
            "podIP": "10.244.0.5",
            "podIPs": [{"ip": "10.244.0.5"}],
            "startTime": "2024-05-01T10:00:01Z",
            "containerStatuses": [{
                "name": "c",
                "state": {"running": {"startedAt": "2024-05-01T10:00:03Z"}},
                "lastState": {},
                "ready": true,
                "restartCount": 0,
                "image": "docker.io/library/busybox:latest",
                "imageID": "sha256:abc",
                "containerID": "containerd://123",
                "started": true
            }],
            "qosClass": "BestEffort"
        }
    });
    assert_eq!(decoded(&envelope("v1", "Pod", &pod)), expected);
}

#[test]
fn pod_spec_without_containers_prints_containers_null() {
    // PodSpec.containers has no omitempty: a nil slice is `null`, as Go prints it.
    let pod = core::Pod {
        metadata: Some(object_meta("p", &[])),
        spec: Some(core::PodSpec::default()),
        status: None,
    };
    assert_eq!(
        decoded(&envelope("v1", "Pod", &pod)),
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "creationTimestamp": null},
            "spec": {"containers": null},
            "status": {}
        })
    );
}

#[test]
fn lease_micro_times_keep_six_fractional_digits() {
    let micro = |seconds: i64, nanos: i32| meta::MicroTime {
        seconds: Some(seconds),
        nanos: Some(nanos),
    };
    let lease = k8s_pb::api::coordination::v1::Lease {
        metadata: Some(meta::ObjectMeta {
            namespace: s("kube-node-lease"),
            ..object_meta("n1", &[])
        }),
        spec: Some(k8s_pb::api::coordination::v1::LeaseSpec {
            holder_identity: s("n1"),
            lease_duration_seconds: Some(40),
            acquire_time: Some(micro(T0, 0)),
            renew_time: Some(micro(T0 + 10, 123_456_789)),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    };
    assert_eq!(
        decoded(&envelope("coordination.k8s.io/v1", "Lease", &lease)),
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "n1", "namespace": "kube-node-lease", "creationTimestamp": null},
            "spec": {
                "holderIdentity": "n1",
                "leaseDurationSeconds": 40,
                "acquireTime": "2024-05-01T10:00:00.000000Z",
                "renewTime": "2024-05-01T10:00:10.123456Z",
                "leaseTransitions": 0
            }
        })
    );
}

#[test]
fn core_event_prints_zero_times_as_null_and_required_strings_as_empty() {
    let event = core::Event {
        metadata: Some(meta::ObjectMeta {
            namespace: s("default"),
            ..object_meta("web.17c", &[])
        }),
        involved_object: Some(core::ObjectReference {
            kind: s("Pod"),
            namespace: s("default"),
            name: s("web"),
            ..Default::default()
        }),
        reason: s("Scheduled"),
        message: s("Successfully assigned default/web to n1"),
        source: Some(core::EventSource {
            component: s("default-scheduler"),
            host: Some(String::new()),
        }),
        first_timestamp: Some(time(T0)),
        last_timestamp: Some(time(T0)),
        count: Some(1),
        r#type: s("Normal"),
        event_time: Some(meta::MicroTime::default()),
        ..Default::default()
    };
    assert_eq!(
        decoded(&envelope("v1", "Event", &event)),
        json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web.17c", "namespace": "default", "creationTimestamp": null},
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web"},
            "reason": "Scheduled",
            "message": "Successfully assigned default/web to n1",
            "source": {"component": "default-scheduler"},
            "firstTimestamp": "2024-05-01T10:00:00Z",
            "lastTimestamp": "2024-05-01T10:00:00Z",
            "count": 1,
            "type": "Normal",
            "eventTime": null,
            "reportingComponent": "",
            "reportingInstance": ""
        })
    );
}

#[test]
fn node_status_quantity_maps_and_daemon_endpoint_port_decode() {
    let resources = |cpu: &str, mem: &str| -> BTreeMap<String, Quantity> {
        [("cpu", cpu), ("memory", mem), ("pods", "110")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), quantity(v)))
            .collect()
    };
    let node = core::Node {
        metadata: Some(object_meta("n1", &[("kubernetes.io/hostname", "n1")])),
        spec: Some(core::NodeSpec {
            pod_cidr: s("10.244.0.0/24"),
            pod_cid_rs: strings(&["10.244.0.0/24"]),
            taints: vec![core::Taint {
                key: s("node.kubernetes.io/not-ready"),
                value: Some(String::new()),
                effect: s("NoSchedule"),
                time_added: None,
            }],
            ..Default::default()
        }),
        status: Some(core::NodeStatus {
            capacity: resources("2", "8Gi"),
            allocatable: resources("1900m", "7Gi"),
            conditions: vec![core::NodeCondition {
                r#type: s("Ready"),
                status: s("True"),
                last_heartbeat_time: Some(time(T0)),
                last_transition_time: Some(time(T0)),
                reason: s("KubeletReady"),
                message: s("kubelet is posting ready status"),
            }],
            addresses: vec![core::NodeAddress {
                r#type: s("InternalIP"),
                address: s("10.0.0.1"),
            }],
            daemon_endpoints: Some(core::NodeDaemonEndpoints {
                kubelet_endpoint: Some(core::DaemonEndpoint { port: Some(10250) }),
            }),
            ..Default::default()
        }),
    };
    assert_eq!(
        decoded(&envelope("v1", "Node", &node)),
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n1", "creationTimestamp": null, "labels": {"kubernetes.io/hostname": "n1"}},
            "spec": {
                "podCIDR": "10.244.0.0/24",
                "podCIDRs": ["10.244.0.0/24"],
                "taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]
            },
            "status": {
                "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110"},
                "allocatable": {"cpu": "1900m", "memory": "7Gi", "pods": "110"},
                "conditions": [{
                    "type": "Ready", "status": "True",
                    "lastHeartbeatTime": "2024-05-01T10:00:00Z",
                    "lastTransitionTime": "2024-05-01T10:00:00Z",
                    "reason": "KubeletReady", "message": "kubelet is posting ready status"
                }],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {
                    "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "",
                    "osImage": "", "containerRuntimeVersion": "", "kubeletVersion": "",
                    "kubeProxyVersion": "", "operatingSystem": "", "architecture": ""
                }
            }
        })
    );
}

fn pod_template(labels: &[(&str, &str)]) -> core::PodTemplateSpec {
    core::PodTemplateSpec {
        metadata: Some(object_meta("", labels)),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: s("c"),
                image: s("busybox"),
                resources: Some(core::ResourceRequirements::default()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn selector(labels: &[(&str, &str)]) -> meta::LabelSelector {
    meta::LabelSelector {
        match_labels: map(labels),
        match_expressions: vec![],
    }
}

const TEMPLATE_JSON: &str = r#"{"metadata":{"creationTimestamp":null,"labels":{"app":"db"}},
    "spec":{"containers":[{"name":"c","image":"busybox","resources":{}}]}}"#;

fn template_json() -> Value {
    serde_json::from_str(TEMPLATE_JSON).expect("valid JSON")
}

#[test]
fn statefulset_with_claim_templates_prints_required_status_counters() {
    let claim = core::PersistentVolumeClaim {
        metadata: Some(object_meta("data", &[])),
        spec: Some(core::PersistentVolumeClaimSpec {
            access_modes: strings(&["ReadWriteOnce"]),
            resources: Some(core::VolumeResourceRequirements {
                limits: BTreeMap::new(),
                requests: [("storage".to_owned(), quantity("1Gi"))]
                    .into_iter()
                    .collect(),
            }),
            storage_class_name: s("local-path"),
            ..Default::default()
        }),
        status: Some(core::PersistentVolumeClaimStatus::default()),
    };
    let sts = apps::StatefulSet {
        metadata: Some(object_meta("db", &[])),
        spec: Some(apps::StatefulSetSpec {
            replicas: Some(1),
            selector: Some(selector(&[("app", "db")])),
            template: Some(pod_template(&[("app", "db")])),
            volume_claim_templates: vec![claim],
            service_name: s("db"),
            persistent_volume_claim_retention_policy: Some(
                apps::StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: s("Retain"),
                    when_scaled: s("Delete"),
                },
            ),
            ..Default::default()
        }),
        status: None,
    };
    assert_eq!(
        decoded(&envelope("apps/v1", "StatefulSet", &sts)),
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "creationTimestamp": null},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "db"}},
                "template": template_json(),
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data", "creationTimestamp": null},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                        "storageClassName": "local-path"
                    },
                    "status": {}
                }],
                "serviceName": "db",
                "updateStrategy": {},
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Delete"}
            },
            "status": {"replicas": 0, "availableReplicas": 0}
        })
    );
}

#[test]
fn daemonset_rolling_update_int_or_string_and_zero_status_counters() {
    let ds = apps::DaemonSet {
        metadata: Some(object_meta("agent", &[])),
        spec: Some(apps::DaemonSetSpec {
            selector: Some(selector(&[("app", "db")])),
            template: Some(pod_template(&[("app", "db")])),
            update_strategy: Some(apps::DaemonSetUpdateStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDaemonSet {
                    max_unavailable: Some(int_port(1)),
                    max_surge: Some(int_port(0)),
                }),
            }),
            revision_history_limit: Some(10),
            ..Default::default()
        }),
        status: Some(apps::DaemonSetStatus::default()),
    };
    assert_eq!(
        decoded(&envelope("apps/v1", "DaemonSet", &ds)),
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "creationTimestamp": null},
            "spec": {
                "selector": {"matchLabels": {"app": "db"}},
                "template": template_json(),
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                "revisionHistoryLimit": 10
            },
            "status": {
                "currentNumberScheduled": 0, "numberMisscheduled": 0,
                "desiredNumberScheduled": 0, "numberReady": 0
            }
        })
    );
}

#[test]
fn replicaset_without_template_prints_the_zero_template() {
    // ReplicaSetSpec.template is a non-pointer struct: absent on the wire, Go still prints it.
    let rs = apps::ReplicaSet {
        metadata: Some(object_meta("rs", &[])),
        spec: Some(apps::ReplicaSetSpec {
            replicas: Some(0),
            selector: Some(selector(&[])),
            ..Default::default()
        }),
        status: None,
    };
    assert_eq!(
        decoded(&envelope("apps/v1", "ReplicaSet", &rs)),
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "rs", "creationTimestamp": null},
            "spec": {
                "replicas": 0,
                "selector": {},
                "template": {"metadata": {"creationTimestamp": null}, "spec": {"containers": null}}
            },
            "status": {"replicas": 0}
        })
    );
}

#[test]
fn secret_and_configmap_bytes_are_base64() {
    let secret = core::Secret {
        metadata: Some(object_meta("s", &[])),
        immutable: Some(true),
        data: [
            ("a".to_owned(), b"b".to_vec()),
            ("bin".to_owned(), vec![0, 0xff]),
            ("empty".to_owned(), vec![]),
        ]
        .into_iter()
        .collect(),
        string_data: BTreeMap::new(),
        r#type: s("Opaque"),
    };
    assert_eq!(
        decoded(&envelope("v1", "Secret", &secret)),
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "creationTimestamp": null},
            "immutable": true,
            "data": {"a": "Yg==", "bin": "AP8=", "empty": ""},
            "type": "Opaque"
        })
    );
    let cm = core::ConfigMap {
        metadata: Some(object_meta("cm", &[])),
        immutable: None,
        data: map(&[("k", "v")]),
        binary_data: [("blob".to_owned(), b"hello".to_vec())]
            .into_iter()
            .collect(),
    };
    assert_eq!(
        decoded(&envelope("v1", "ConfigMap", &cm)),
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cm", "creationTimestamp": null},
            "data": {"k": "v"},
            "binaryData": {"blob": "aGVsbG8="}
        })
    );
}

#[test]
fn delete_options_decode_under_any_group_version() {
    let options = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        preconditions: Some(meta::Preconditions {
            uid: s("3f1e"),
            resource_version: s("7"),
        }),
        orphan_dependents: None,
        propagation_policy: s("Foreground"),
        dry_run: strings(&["All"]),
        ignore_store_read_error_with_cluster_breaking_potential: None,
    };
    for api_version in ["v1", "apps/v1", "batch/v1"] {
        assert_eq!(
            decoded(&envelope(api_version, "DeleteOptions", &options)),
            json!({
                "apiVersion": api_version, "kind": "DeleteOptions",
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": "3f1e", "resourceVersion": "7"},
                "propagationPolicy": "Foreground",
                "dryRun": ["All"]
            })
        );
    }
}

#[test]
fn eviction_carries_nested_delete_options_without_type_meta() {
    let eviction = k8s_pb::api::policy::v1::Eviction {
        metadata: Some(meta::ObjectMeta {
            namespace: s("default"),
            ..object_meta("web-1", &[])
        }),
        delete_options: Some(meta::DeleteOptions {
            grace_period_seconds: Some(30),
            ..Default::default()
        }),
    };
    assert_eq!(
        decoded(&envelope("policy/v1", "Eviction", &eviction)),
        json!({
            "apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": null},
            "deleteOptions": {"gracePeriodSeconds": 30}
        })
    );
}

#[test]
fn raw_extension_inlines_json_and_decodes_nested_protobuf() {
    let revision = apps::ControllerRevision {
        metadata: Some(object_meta("web-1", &[])),
        data: Some(RawExtension {
            raw: Some(br#"{"spec":{"template":{"$patch":"replace"}}}"#.to_vec()),
        }),
        revision: Some(2),
    };
    assert_eq!(
        decoded(&envelope("apps/v1", "ControllerRevision", &revision)),
        json!({
            "apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": "web-1", "creationTimestamp": null},
            "data": {"spec": {"template": {"$patch": "replace"}}},
            "revision": 2
        })
    );
    let namespace = core::Namespace {
        metadata: Some(object_meta("t1", &[])),
        ..Default::default()
    };
    let event = meta::WatchEvent {
        r#type: s("ADDED"),
        object: Some(RawExtension {
            raw: Some(envelope("v1", "Namespace", &namespace)),
        }),
    };
    assert_eq!(
        decoded(&envelope("v1", "WatchEvent", &event)),
        json!({
            "apiVersion": "v1", "kind": "WatchEvent",
            "type": "ADDED",
            "object": {
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "t1", "creationTimestamp": null},
                "spec": {}, "status": {}
            }
        })
    );
}

#[test]
fn self_subject_access_review_with_non_resource_attributes() {
    use k8s_pb::api::authorization::v1 as authz;
    let review = authz::SelfSubjectAccessReview {
        metadata: Some(object_meta("", &[])),
        spec: Some(authz::SelfSubjectAccessReviewSpec {
            resource_attributes: None,
            non_resource_attributes: Some(authz::NonResourceAttributes {
                path: s("/healthz"),
                verb: s("get"),
            }),
        }),
        status: Some(authz::SubjectAccessReviewStatus {
            allowed: Some(false),
            denied: Some(false),
            reason: Some(String::new()),
            evaluation_error: Some(String::new()),
        }),
    };
    assert_eq!(
        decoded(&envelope(
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
            &review
        )),
        json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "metadata": {"creationTimestamp": null},
            "spec": {"nonResourceAttributes": {"path": "/healthz", "verb": "get"}},
            "status": {"allowed": false}
        })
    );
}

#[test]
fn user_extra_values_decode_as_string_arrays() {
    use k8s_pb::api::authentication::v1 as authn;
    let review = authn::TokenReview {
        metadata: Some(object_meta("", &[])),
        spec: Some(authn::TokenReviewSpec {
            token: s("abc"),
            audiences: vec![],
        }),
        status: Some(authn::TokenReviewStatus {
            authenticated: Some(true),
            user: Some(authn::UserInfo {
                username: s("alice"),
                uid: Some(String::new()),
                groups: strings(&["dev"]),
                extra: [(
                    "scopes".to_owned(),
                    authn::ExtraValue {
                        items: strings(&["a", "b"]),
                    },
                )]
                .into_iter()
                .collect(),
            }),
            audiences: vec![],
            error: Some(String::new()),
        }),
    };
    assert_eq!(
        decoded(&envelope(
            "authentication.k8s.io/v1",
            "TokenReview",
            &review
        )),
        json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "metadata": {"creationTimestamp": null},
            "spec": {"token": "abc"},
            "status": {
                "authenticated": true,
                "user": {"username": "alice", "groups": ["dev"], "extra": {"scopes": ["a", "b"]}}
            }
        })
    );
}

fn unknown_body(api_version: Option<&str>, kind: Option<&str>, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: api_version.map(str::to_owned),
            kind: kind.map(str::to_owned),
        }),
        raw: Some(raw),
        content_encoding: None,
        content_type: None,
    };
    let mut body = MAGIC.to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

#[test]
fn envelope_errors_match_the_upstream_messages() {
    assert_eq!(decode(b""), Err(Error::EmptyData));
    assert_eq!(decode(b"{\"kind\":\"Pod\"}"), Err(Error::NotProtobuf));
    assert_eq!(decode(b"k8s"), Err(Error::NotProtobuf));
    assert_eq!(decode(b"k8s\0"), Err(Error::EmptyBody));
    assert_eq!(
        Error::NotProtobuf.to_string(),
        "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
    );
    assert_eq!(
        decode(&unknown_body(Some("v1"), None, vec![])),
        Err(Error::MissingKind)
    );
    assert_eq!(
        decode(&unknown_body(None, Some("Pod"), vec![])),
        Err(Error::MissingVersion)
    );
}

#[test]
fn unknown_kinds_are_unsupported_with_their_names() {
    let err = decode(&unknown_body(
        Some("example.com/v1"),
        Some("Widget"),
        vec![],
    ));
    assert_eq!(
        err,
        Err(Error::UnsupportedKind {
            api_version: "example.com/v1".into(),
            kind: "Widget".into()
        })
    );
    // A known kind under the wrong group/version is not guessed.
    assert!(matches!(
        decode(&unknown_body(Some("v1"), Some("Deployment"), vec![])),
        Err(Error::UnsupportedKind { .. })
    ));
    assert_eq!(
        Error::UnsupportedKind {
            api_version: "example.com/v1".into(),
            kind: "Widget".into()
        }
        .to_string(),
        "no kind \"Widget\" is registered for version \"example.com/v1\" in the protobuf decoder"
    );
}

#[test]
fn malformed_payloads_are_errors_not_panics() {
    // Truncated length-delimited field.
    let body = unknown_body(Some("v1"), Some("Namespace"), vec![0x0a, 0x05, 0x01]);
    assert!(matches!(decode(&body), Err(Error::Malformed { .. })));
    // Namespace.metadata (field 1) sent as a varint.
    let body = unknown_body(Some("v1"), Some("Namespace"), vec![0x08, 0x01]);
    assert!(matches!(decode(&body), Err(Error::Malformed { .. })));
    // A RawExtension that is neither JSON nor an envelope.
    let revision = apps::ControllerRevision {
        data: Some(RawExtension {
            raw: Some(b"\x01\x02not json".to_vec()),
        }),
        ..Default::default()
    };
    let body = envelope("apps/v1", "ControllerRevision", &revision);
    assert!(matches!(decode(&body), Err(Error::Malformed { .. })));
    // IntOrString with an impossible type.
    let service = core::Service {
        spec: Some(core::ServiceSpec {
            ports: vec![core::ServicePort {
                port: Some(80),
                target_port: Some(IntOrString {
                    r#type: Some(7),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(matches!(
        decode(&envelope("v1", "Service", &service)),
        Err(Error::Malformed { .. })
    ));
}

#[test]
fn deeply_nested_raw_extensions_stop_with_an_error() {
    let mut body = envelope("v1", "Namespace", &core::Namespace::default());
    for _ in 0..(MAX_DEPTH + 2) {
        let event = meta::WatchEvent {
            r#type: s("ADDED"),
            object: Some(RawExtension { raw: Some(body) }),
        };
        body = envelope("v1", "WatchEvent", &event);
    }
    assert!(matches!(decode(&body), Err(Error::Malformed { .. })));
}

#[test]
fn unknown_field_numbers_are_skipped() {
    let mut raw = core::Namespace {
        metadata: Some(object_meta("t1", &[])),
        ..Default::default()
    }
    .encode_to_vec();
    // Field 99, length-delimited "x"; field 98, varint 1.
    raw.extend([0x9a, 0x06, 0x01, b'x', 0x90, 0x06, 0x01]);
    assert_eq!(
        decoded(&unknown_body(Some("v1"), Some("Namespace"), raw)),
        json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "t1", "creationTimestamp": null},
            "spec": {}, "status": {}
        })
    );
}

#[test]
fn repeated_occurrences_of_a_message_merge_and_scalars_take_the_last() {
    let first = core::Namespace {
        metadata: Some(meta::ObjectMeta {
            name: s("first"),
            labels: map(&[("a", "1")]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let second = core::Namespace {
        metadata: Some(meta::ObjectMeta {
            name: s("second"),
            labels: map(&[("b", "2")]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut raw = first.encode_to_vec();
    raw.extend(second.encode_to_vec());
    assert_eq!(
        decoded(&unknown_body(Some("v1"), Some("Namespace"), raw)),
        json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "second", "creationTimestamp": null, "labels": {"a": "1", "b": "2"}},
            "spec": {}, "status": {}
        })
    );
}

#[test]
fn packed_repeated_integers_are_accepted() {
    // Pod.spec (2) { securityContext (14) { supplementalGroups (4) packed [1, 2, 300] } }
    let groups = [0x22, 0x04, 0x01, 0x02, 0xac, 0x02];
    let mut security = vec![0x72, groups.len() as u8];
    security.extend(groups);
    let mut raw = vec![0x12, security.len() as u8];
    raw.extend(security);
    let value = decoded(&unknown_body(Some("v1"), Some("Pod"), raw));
    assert_eq!(
        value["spec"]["securityContext"],
        json!({"supplementalGroups": [1, 2, 300]})
    );
}

#[test]
fn negative_int32_values_survive_sign_extension() {
    let service = core::Service {
        spec: Some(core::ServiceSpec {
            ports: vec![core::ServicePort {
                port: Some(-1),
                target_port: Some(int_port(-5)),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let value = decoded(&envelope("v1", "Service", &service));
    assert_eq!(
        value["spec"]["ports"],
        json!([{"port": -1, "targetPort": -5}])
    );
}

#[test]
fn time_ignores_nanos_and_formats_epoch_as_a_real_time() {
    let ns = core::Namespace {
        metadata: Some(meta::ObjectMeta {
            creation_timestamp: Some(meta::Time {
                seconds: Some(0),
                nanos: Some(999_999_999),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let value = decoded(&envelope("v1", "Namespace", &ns));
    assert_eq!(
        value["metadata"]["creationTimestamp"],
        json!("1970-01-01T00:00:00Z")
    );
}

#[test]
fn go_duration_strings() {
    let cases = [
        (0, "0s"),
        (5, "5ns"),
        (1_500, "1.5µs"),
        (300_000_000, "300ms"),
        (1_500_000_000, "1.5s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (3_723_004_000_000, "1h2m3.004s"),
        (-2_000_000_000, "-2s"),
    ];
    for (nanos, text) in cases {
        assert_eq!(go_duration(nanos), text, "{nanos}ns");
    }
}

#[test]
fn protobuf_content_types_are_recognised() {
    assert!(is_protobuf("application/vnd.kubernetes.protobuf"));
    assert!(is_protobuf(
        "application/vnd.kubernetes.protobuf; charset=utf-8"
    ));
    assert!(is_protobuf(
        "Application/VND.Kubernetes.Protobuf;stream=watch"
    ));
    assert!(!is_protobuf("application/json"));
    assert!(!is_protobuf("application/vnd.kubernetes.protobuf+json"));
    assert!(!is_protobuf(""));
}

#[test]
fn every_kind_kubectl_sends_as_protobuf_is_known() {
    let kinds = [
        ("v1", "Namespace"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "Service"),
        ("v1", "ServiceAccount"),
        ("v1", "ResourceQuota"),
        ("v1", "Pod"),
        ("v1", "Node"),
        ("v1", "Event"),
        ("v1", "PersistentVolumeClaim"),
        ("v1", "DeleteOptions"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "ReplicaSet"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("batch/v1", "Job"),
        ("batch/v1", "CronJob"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("scheduling.k8s.io/v1", "PriorityClass"),
        ("policy/v1", "PodDisruptionBudget"),
        ("policy/v1", "Eviction"),
        ("policy/v1", "DeleteOptions"),
        ("networking.k8s.io/v1", "Ingress"),
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
        ("coordination.k8s.io/v1", "Lease"),
        ("events.k8s.io/v1", "Event"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ];
    for (api_version, kind) in kinds {
        assert!(
            lookup_kind(api_version, kind).is_some(),
            "{api_version} {kind}"
        );
    }
}

#[test]
fn schema_table_is_consistent() {
    let count = schema::MESSAGES.len();
    for message in &schema::MESSAGES {
        for field in message.fields {
            if let Ty::Msg(index) = field.ty {
                assert!(
                    usize::from(index) < count,
                    "{}.{}",
                    message.name,
                    field.json
                );
            }
            if field.card == Card::Inline {
                assert!(matches!(field.ty, Ty::Msg(_)), "{} inline", message.name);
                assert!(field.json.is_empty());
            } else {
                assert!(
                    !field.json.is_empty(),
                    "{} field {}",
                    message.name,
                    field.tag
                );
            }
        }
    }
    for pair in schema::KINDS.windows(2) {
        assert!(
            (pair[0].api_version, pair[0].kind) < (pair[1].api_version, pair[1].kind),
            "KINDS must be sorted and unique for binary search"
        );
    }
}

#[test]
fn real_kubectl_create_token_body_prints_nil_required_pointers_as_null() {
    let body = include_bytes!("../../tests/fixtures/protobuf/token.bin");
    assert_eq!(
        decoded(body),
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {"creationTimestamp": null},
            "spec": {"audiences": ["api"], "expirationSeconds": 3600, "boundObjectRef": null},
            "status": {"token": "", "expirationTimestamp": null}
        })
    );
}
