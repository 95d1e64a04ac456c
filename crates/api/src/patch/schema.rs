//! The strategic-merge type graph: which built-in fields carry a patch strategy and merge key.
//!
//! Keyed by *type*, not by path, so a `PodSpec` merges the same way under a Pod, a Deployment's
//! template or a CronJob's `jobTemplate.spec.template`. Only the fields that either carry a
//! strategy or lead to a type that does are listed: every other list is replaced atomically and
//! every other map merges key by key, which is exactly upstream's default. Source: the
//! `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key` table of the 1.33 OpenAPI
//! schema (api-facts.md §2.4).

/// How a field combines with the live value under strategic merge patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// No strategy: lists are replaced wholesale, maps merge key by key.
    Default,
    /// Lists merge element by element (by merge key, or as a set of primitives).
    Merge,
    /// The value is replaced wholesale even when it is a map.
    Replace,
    /// A map whose client-side diff carries `$retainKeys`; the server honours the directive
    /// wherever it appears, so server-side this merges like [`Strategy::Default`].
    RetainKeys,
    /// A merge list whose elements get `$retainKeys` from client-side apply.
    MergeRetainKeys,
}

impl Strategy {
    /// Whether lists under this strategy merge rather than replace.
    pub(crate) fn merges_lists(self) -> bool {
        matches!(self, Strategy::Merge | Strategy::MergeRetainKeys)
    }
}

/// One field of a [`TypeDef`] that matters to strategic merge.
#[derive(Debug)]
pub(crate) struct FieldDef {
    /// JSON name of the field.
    pub(crate) name: &'static str,
    /// The field's own type (for a list: the element type), when it has fields worth knowing.
    pub(crate) ty: Option<&'static TypeDef>,
    /// Patch strategy of the field.
    pub(crate) strategy: Strategy,
    /// Merge key of a merge list of objects.
    pub(crate) merge_key: Option<&'static str>,
}

/// A named API type and its strategy-relevant fields.
#[derive(Debug)]
pub(crate) struct TypeDef {
    /// OpenAPI definition name without the `io.k8s.api.` prefix (for diagnostics).
    #[allow(dead_code)]
    pub(crate) name: &'static str,
    /// Fields with a strategy or leading to a type with one.
    pub(crate) fields: &'static [FieldDef],
}

impl TypeDef {
    /// Looks up a field by JSON name.
    pub(crate) fn field(&self, name: &str) -> Option<&'static FieldDef> {
        // `fields` is a 'static slice, so the reference outlives `self`.
        let fields: &'static [FieldDef] = self.fields;
        fields.iter().find(|f| f.name == name)
    }
}

/// What strategic merge needs to know about one field of a (possibly unknown) type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldMeta {
    /// Type of the field's value or list element, if known.
    pub(crate) ty: Option<&'static TypeDef>,
    /// Patch strategy.
    pub(crate) strategy: Strategy,
    /// Merge key for lists of objects.
    pub(crate) merge_key: Option<&'static str>,
}

impl FieldMeta {
    /// Metadata of a field nobody declared a strategy for.
    pub(crate) const UNKNOWN: FieldMeta = FieldMeta {
        ty: None,
        strategy: Strategy::Default,
        merge_key: None,
    };
}

/// Strategy metadata of field `name` inside a value of type `ty` (unknown type → defaults).
pub(crate) fn lookup(ty: Option<&'static TypeDef>, name: &str) -> FieldMeta {
    match ty.and_then(|t| t.field(name)) {
        Some(f) => FieldMeta {
            ty: f.ty,
            strategy: f.strategy,
            merge_key: f.merge_key,
        },
        None => FieldMeta::UNKNOWN,
    }
}

/// Root type of a built-in kind, or `None` when the kind has no compiled-in schema (CRDs and
/// aggregated APIs: upstream refuses strategic merge for those).
pub(crate) fn root_type(group: &str, kind: &str) -> Option<&'static TypeDef> {
    KINDS
        .iter()
        .find(|(g, k, _)| *g == group && *k == kind)
        .map(|(_, _, t)| *t)
}

const fn field(name: &'static str, ty: &'static TypeDef) -> FieldDef {
    FieldDef {
        name,
        ty: Some(ty),
        strategy: Strategy::Default,
        merge_key: None,
    }
}

const fn merge(name: &'static str, ty: Option<&'static TypeDef>, key: &'static str) -> FieldDef {
    FieldDef {
        name,
        ty,
        strategy: Strategy::Merge,
        merge_key: Some(key),
    }
}

const fn merge_retain(
    name: &'static str,
    ty: Option<&'static TypeDef>,
    key: &'static str,
) -> FieldDef {
    FieldDef {
        name,
        ty,
        strategy: Strategy::MergeRetainKeys,
        merge_key: Some(key),
    }
}

const fn merge_primitives(name: &'static str) -> FieldDef {
    FieldDef {
        name,
        ty: None,
        strategy: Strategy::Merge,
        merge_key: None,
    }
}

const fn with_strategy(name: &'static str, strategy: Strategy) -> FieldDef {
    FieldDef {
        name,
        ty: None,
        strategy,
        merge_key: None,
    }
}

const fn conditions_by_type() -> FieldDef {
    merge("conditions", None, "type")
}

// ---- meta.v1 -------------------------------------------------------------------------------

static OBJECT_META: TypeDef = TypeDef {
    name: "meta.v1.ObjectMeta",
    fields: &[
        merge_primitives("finalizers"),
        merge("ownerReferences", None, "uid"),
    ],
};

/// A kind whose only strategy-bearing part is its `metadata`.
static META_ONLY: TypeDef = TypeDef {
    name: "(metadata only)",
    fields: &[field("metadata", &OBJECT_META)],
};

// ---- core.v1 -------------------------------------------------------------------------------

static CONTAINER: TypeDef = TypeDef {
    name: "core.v1.Container",
    fields: &[
        merge("env", None, "name"),
        merge("ports", None, "containerPort"),
        merge("volumeDevices", None, "devicePath"),
        merge("volumeMounts", None, "mountPath"),
    ],
};

static EPHEMERAL_CONTAINER: TypeDef = TypeDef {
    name: "core.v1.EphemeralContainer",
    fields: &[
        merge("env", None, "name"),
        merge("ports", None, "containerPort"),
        merge("volumeDevices", None, "devicePath"),
        merge("volumeMounts", None, "mountPath"),
    ],
};

static POD_SPEC: TypeDef = TypeDef {
    name: "core.v1.PodSpec",
    fields: &[
        merge("containers", Some(&CONTAINER), "name"),
        merge("ephemeralContainers", Some(&EPHEMERAL_CONTAINER), "name"),
        merge("hostAliases", None, "ip"),
        merge("imagePullSecrets", None, "name"),
        merge("initContainers", Some(&CONTAINER), "name"),
        merge_retain("resourceClaims", None, "name"),
        merge("schedulingGates", None, "name"),
        merge("topologySpreadConstraints", None, "topologyKey"),
        merge_retain("volumes", None, "name"),
    ],
};

static CONTAINER_STATUS: TypeDef = TypeDef {
    name: "core.v1.ContainerStatus",
    fields: &[
        merge("allocatedResourcesStatus", None, "name"),
        merge("volumeMounts", None, "mountPath"),
    ],
};

static POD_STATUS: TypeDef = TypeDef {
    name: "core.v1.PodStatus",
    fields: &[
        conditions_by_type(),
        merge("hostIPs", None, "ip"),
        merge("podIPs", None, "ip"),
        merge_retain("resourceClaimStatuses", None, "name"),
        // Atomic lists, but their elements are typed: a replaced list needs no recursion, the
        // entries only matter when a patch uses `$setElementOrder` on them.
        field("containerStatuses", &CONTAINER_STATUS),
        field("initContainerStatuses", &CONTAINER_STATUS),
        field("ephemeralContainerStatuses", &CONTAINER_STATUS),
    ],
};

static POD: TypeDef = TypeDef {
    name: "core.v1.Pod",
    fields: &[
        field("metadata", &OBJECT_META),
        field("spec", &POD_SPEC),
        field("status", &POD_STATUS),
    ],
};

static POD_TEMPLATE_SPEC: TypeDef = TypeDef {
    name: "core.v1.PodTemplateSpec",
    fields: &[field("metadata", &OBJECT_META), field("spec", &POD_SPEC)],
};

static POD_TEMPLATE: TypeDef = TypeDef {
    name: "core.v1.PodTemplate",
    fields: &[
        field("metadata", &OBJECT_META),
        field("template", &POD_TEMPLATE_SPEC),
    ],
};

/// A `spec` whose only strategy-bearing field is the pod `template`.
static TEMPLATED_SPEC: TypeDef = TypeDef {
    name: "(spec with template)",
    fields: &[field("template", &POD_TEMPLATE_SPEC)],
};

/// A `status` whose only strategy-bearing field is `conditions` merged by `type`.
static CONDITIONED_STATUS: TypeDef = TypeDef {
    name: "(status with conditions)",
    fields: &[conditions_by_type()],
};

/// Kinds shaped `{metadata, spec: {template}, status: {conditions}}`.
static TEMPLATED_WORKLOAD: TypeDef = TypeDef {
    name: "(workload with pod template)",
    fields: &[
        field("metadata", &OBJECT_META),
        field("spec", &TEMPLATED_SPEC),
        field("status", &CONDITIONED_STATUS),
    ],
};

/// Kinds shaped `{metadata, status: {conditions}}`.
static CONDITIONED_KIND: TypeDef = TypeDef {
    name: "(kind with status conditions)",
    fields: &[
        field("metadata", &OBJECT_META),
        field("status", &CONDITIONED_STATUS),
    ],
};

static SERVICE_SPEC: TypeDef = TypeDef {
    name: "core.v1.ServiceSpec",
    fields: &[merge("ports", None, "port")],
};

static SERVICE: TypeDef = TypeDef {
    name: "core.v1.Service",
    fields: &[
        field("metadata", &OBJECT_META),
        field("spec", &SERVICE_SPEC),
        field("status", &CONDITIONED_STATUS),
    ],
};

static NODE_SPEC: TypeDef = TypeDef {
    name: "core.v1.NodeSpec",
    fields: &[merge_primitives("podCIDRs")],
};

static NODE_STATUS: TypeDef = TypeDef {
    name: "core.v1.NodeStatus",
    fields: &[merge("addresses", None, "type"), conditions_by_type()],
};

static NODE: TypeDef = TypeDef {
    name: "core.v1.Node",
    fields: &[
        field("metadata", &OBJECT_META),
        field("spec", &NODE_SPEC),
        field("status", &NODE_STATUS),
    ],
};

static SERVICE_ACCOUNT: TypeDef = TypeDef {
    name: "core.v1.ServiceAccount",
    fields: &[
        field("metadata", &OBJECT_META),
        merge("secrets", None, "name"),
    ],
};

static COMPONENT_STATUS: TypeDef = TypeDef {
    name: "core.v1.ComponentStatus",
    fields: &[field("metadata", &OBJECT_META), conditions_by_type()],
};

// ---- apps.v1 / batch.v1 --------------------------------------------------------------------

static DEPLOYMENT_SPEC: TypeDef = TypeDef {
    name: "apps.v1.DeploymentSpec",
    fields: &[
        field("template", &POD_TEMPLATE_SPEC),
        with_strategy("strategy", Strategy::RetainKeys),
    ],
};

static DEPLOYMENT: TypeDef = TypeDef {
    name: "apps.v1.Deployment",
    fields: &[
        field("metadata", &OBJECT_META),
        field("spec", &DEPLOYMENT_SPEC),
        field("status", &CONDITIONED_STATUS),
    ],
};

static PVC_STATUS: TypeDef = TypeDef {
    name: "core.v1.PersistentVolumeClaimStatus",
    fields: &[conditions_by_type()],
};

static PERSISTENT_VOLUME_CLAIM: TypeDef = TypeDef {
    name: "core.v1.PersistentVolumeClaim",
    fields: &[
        field("metadata", &OBJECT_META),
        field("status", &PVC_STATUS),
    ],
};

static STATEFUL_SET_SPEC: TypeDef = TypeDef {
    name: "apps.v1.StatefulSetSpec",
    fields: &[
        field("template", &POD_TEMPLATE_SPEC),
        field("volumeClaimTemplates", &PERSISTENT_VOLUME_CLAIM),
    ],
};

static STATEFUL_SET: TypeDef = TypeDef {
    name: "apps.v1.StatefulSet",
    fields: &[
        field("metadata", &OBJECT_META),
        field("spec", &STATEFUL_SET_SPEC),
        field("status", &CONDITIONED_STATUS),
    ],
};

static JOB_SPEC: TypeDef = TypeDef {
    name: "batch.v1.JobSpec",
    fields: &[field("template", &POD_TEMPLATE_SPEC)],
};

static JOB_TEMPLATE_SPEC: TypeDef = TypeDef {
    name: "batch.v1.JobTemplateSpec",
    fields: &[field("metadata", &OBJECT_META), field("spec", &JOB_SPEC)],
};

static CRON_JOB_SPEC: TypeDef = TypeDef {
    name: "batch.v1.CronJobSpec",
    fields: &[field("jobTemplate", &JOB_TEMPLATE_SPEC)],
};

static CRON_JOB: TypeDef = TypeDef {
    name: "batch.v1.CronJob",
    fields: &[
        field("metadata", &OBJECT_META),
        field("spec", &CRON_JOB_SPEC),
    ],
};

// ---- other groups --------------------------------------------------------------------------

static PDB_SPEC: TypeDef = TypeDef {
    name: "policy.v1.PodDisruptionBudgetSpec",
    fields: &[with_strategy("selector", Strategy::Replace)],
};

static POD_DISRUPTION_BUDGET: TypeDef = TypeDef {
    name: "policy.v1.PodDisruptionBudget",
    fields: &[
        field("metadata", &OBJECT_META),
        field("spec", &PDB_SPEC),
        field("status", &CONDITIONED_STATUS),
    ],
};

static WEBHOOK: TypeDef = TypeDef {
    name: "admissionregistration.v1.{Mutating,Validating}Webhook",
    fields: &[merge("matchConditions", None, "name")],
};

static WEBHOOK_CONFIGURATION: TypeDef = TypeDef {
    name: "admissionregistration.v1.{Mutating,Validating}WebhookConfiguration",
    fields: &[
        field("metadata", &OBJECT_META),
        merge("webhooks", Some(&WEBHOOK), "name"),
    ],
};

static ADMISSION_POLICY_SPEC: TypeDef = TypeDef {
    name: "admissionregistration.v1.ValidatingAdmissionPolicySpec",
    fields: &[
        merge("matchConditions", None, "name"),
        merge("variables", None, "name"),
    ],
};

static VALIDATING_ADMISSION_POLICY: TypeDef = TypeDef {
    name: "admissionregistration.v1.ValidatingAdmissionPolicy",
    fields: &[
        field("metadata", &OBJECT_META),
        field("spec", &ADMISSION_POLICY_SPEC),
    ],
};

static CSI_NODE_SPEC: TypeDef = TypeDef {
    name: "storage.v1.CSINodeSpec",
    fields: &[merge("drivers", None, "name")],
};

static CSI_NODE: TypeDef = TypeDef {
    name: "storage.v1.CSINode",
    fields: &[
        field("metadata", &OBJECT_META),
        field("spec", &CSI_NODE_SPEC),
    ],
};

/// Built-in kinds (group, kind) and their root types. Every built-in kind is listed, even the
/// ones with nothing but `metadata`, because presence here is what makes a kind eligible for
/// strategic merge at all.
static KINDS: &[(&str, &str, &TypeDef)] = &[
    // core
    ("", "Pod", &POD),
    ("", "PodTemplate", &POD_TEMPLATE),
    ("", "ReplicationController", &TEMPLATED_WORKLOAD),
    ("", "Service", &SERVICE),
    ("", "Node", &NODE),
    ("", "Namespace", &CONDITIONED_KIND),
    ("", "PersistentVolumeClaim", &PERSISTENT_VOLUME_CLAIM),
    ("", "ServiceAccount", &SERVICE_ACCOUNT),
    ("", "ComponentStatus", &COMPONENT_STATUS),
    ("", "ConfigMap", &META_ONLY),
    ("", "Secret", &META_ONLY),
    ("", "Endpoints", &META_ONLY),
    ("", "Event", &META_ONLY),
    ("", "LimitRange", &META_ONLY),
    ("", "ResourceQuota", &META_ONLY),
    ("", "PersistentVolume", &META_ONLY),
    ("", "Binding", &META_ONLY),
    // apps
    ("apps", "Deployment", &DEPLOYMENT),
    ("apps", "ReplicaSet", &TEMPLATED_WORKLOAD),
    ("apps", "StatefulSet", &STATEFUL_SET),
    ("apps", "DaemonSet", &TEMPLATED_WORKLOAD),
    ("apps", "ControllerRevision", &META_ONLY),
    // batch
    ("batch", "Job", &TEMPLATED_WORKLOAD),
    ("batch", "CronJob", &CRON_JOB),
    // autoscaling (v2 carries status.conditions; v1 simply has none)
    ("autoscaling", "HorizontalPodAutoscaler", &CONDITIONED_KIND),
    ("autoscaling", "Scale", &META_ONLY),
    // policy
    ("policy", "PodDisruptionBudget", &POD_DISRUPTION_BUDGET),
    ("policy", "Eviction", &META_ONLY),
    // admissionregistration
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
        &WEBHOOK_CONFIGURATION,
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
        &WEBHOOK_CONFIGURATION,
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicy",
        &VALIDATING_ADMISSION_POLICY,
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
        &META_ONLY,
    ),
    // certificates, coordination, discovery, events, flowcontrol, networking, node, rbac,
    // scheduling, storage, apiextensions, apiregistration
    (
        "certificates.k8s.io",
        "CertificateSigningRequest",
        &META_ONLY,
    ),
    ("coordination.k8s.io", "Lease", &META_ONLY),
    ("discovery.k8s.io", "EndpointSlice", &META_ONLY),
    ("events.k8s.io", "Event", &META_ONLY),
    (
        "flowcontrol.apiserver.k8s.io",
        "FlowSchema",
        &CONDITIONED_KIND,
    ),
    (
        "flowcontrol.apiserver.k8s.io",
        "PriorityLevelConfiguration",
        &CONDITIONED_KIND,
    ),
    ("networking.k8s.io", "Ingress", &META_ONLY),
    ("networking.k8s.io", "IngressClass", &META_ONLY),
    ("networking.k8s.io", "NetworkPolicy", &META_ONLY),
    ("networking.k8s.io", "ServiceCIDR", &CONDITIONED_KIND),
    ("networking.k8s.io", "IPAddress", &META_ONLY),
    ("node.k8s.io", "RuntimeClass", &META_ONLY),
    ("rbac.authorization.k8s.io", "Role", &META_ONLY),
    ("rbac.authorization.k8s.io", "ClusterRole", &META_ONLY),
    ("rbac.authorization.k8s.io", "RoleBinding", &META_ONLY),
    (
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        &META_ONLY,
    ),
    ("scheduling.k8s.io", "PriorityClass", &META_ONLY),
    ("storage.k8s.io", "StorageClass", &META_ONLY),
    ("storage.k8s.io", "CSIDriver", &META_ONLY),
    ("storage.k8s.io", "CSINode", &CSI_NODE),
    ("storage.k8s.io", "CSIStorageCapacity", &META_ONLY),
    ("storage.k8s.io", "VolumeAttachment", &META_ONLY),
    ("storage.k8s.io", "VolumeAttributesClass", &META_ONLY),
    (
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        &META_ONLY,
    ),
    ("apiregistration.k8s.io", "APIService", &CONDITIONED_KIND),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_spec_is_shared_by_every_workload_template() {
        let paths: &[(&str, &str, &[&str])] = &[
            ("", "Pod", &["spec"]),
            ("", "PodTemplate", &["template", "spec"]),
            ("", "ReplicationController", &["spec", "template", "spec"]),
            ("apps", "Deployment", &["spec", "template", "spec"]),
            ("apps", "ReplicaSet", &["spec", "template", "spec"]),
            ("apps", "StatefulSet", &["spec", "template", "spec"]),
            ("apps", "DaemonSet", &["spec", "template", "spec"]),
            ("batch", "Job", &["spec", "template", "spec"]),
            (
                "batch",
                "CronJob",
                &["spec", "jobTemplate", "spec", "template", "spec"],
            ),
        ];
        for (group, kind, path) in paths {
            let mut ty = root_type(group, kind);
            for step in *path {
                ty = lookup(ty, step).ty;
            }
            let containers = lookup(ty, "containers");
            assert_eq!(containers.merge_key, Some("name"), "{kind}");
            assert_eq!(
                lookup(containers.ty, "env").merge_key,
                Some("name"),
                "{kind}"
            );
        }
    }

    #[test]
    fn tolerations_and_command_have_no_strategy() {
        let spec = lookup(root_type("", "Pod"), "spec").ty;
        assert_eq!(lookup(spec, "tolerations").strategy, Strategy::Default);
        let container = lookup(spec, "containers").ty;
        assert_eq!(lookup(container, "command").strategy, Strategy::Default);
        assert_eq!(
            lookup(container, "volumeMounts").merge_key,
            Some("mountPath")
        );
        assert_eq!(lookup(container, "ports").merge_key, Some("containerPort"));
    }

    #[test]
    fn unknown_kinds_have_no_schema() {
        assert!(root_type("example.com", "Widget").is_none());
        assert!(root_type("", "Pod").is_some());
    }
}
