//! The resources Skiff serves: group, version, plural, kind, scope, verbs, short names,
//! categories and subresources, as a Kubernetes 1.33 server advertises them in discovery.
//! One static table drives discovery, routing and storage keys.

/// Verbs of an ordinary stored resource, alphabetically as upstream lists them.
pub const CRUD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Namespaces cannot be deleted as a collection.
const CRUD_NO_COLLECTION: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const CREATE_ONLY: &[&str] = &["create"];
const GPU: &[&str] = &["get", "patch", "update"];

/// A subresource (`pods/status`, `deployments/scale`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subresource {
    /// Name after the slash.
    pub name: &'static str,
    /// Group of the response kind when it is not the resource's own (`autoscaling`).
    pub group: Option<&'static str>,
    /// Version of the response kind when it is not the resource's own.
    pub version: Option<&'static str>,
    /// Kind of the object this subresource answers with.
    pub kind: &'static str,
    /// Verbs allowed on the subresource.
    pub verbs: &'static [&'static str],
}

/// One served resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceSpec {
    /// API group, empty for core.
    pub group: &'static str,
    /// Version within the group.
    pub version: &'static str,
    /// Plural resource name used in URLs.
    pub resource: &'static str,
    /// Kind of the objects.
    pub kind: &'static str,
    /// Lower-cased kind.
    pub singular: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Verbs allowed on the resource itself.
    pub verbs: &'static [&'static str],
    /// Short names (`po`, `deploy`).
    pub short_names: &'static [&'static str],
    /// Categories (`all`).
    pub categories: &'static [&'static str],
    /// Subresources.
    pub subresources: &'static [Subresource],
    /// Upstream's storage version hash (legacy discovery only).
    pub storage_version_hash: Option<&'static str>,
}

impl ResourceSpec {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `deployments.apps`, as upstream names a resource in messages.
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    /// `Pod` or `Deployment.apps`, as upstream names a kind in Invalid messages.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// Whether the resource is persisted (review resources are answered, never stored).
    pub fn is_stored(&self) -> bool {
        self.verbs.contains(&"get")
    }

    /// Whether `verb` is allowed on the resource itself.
    pub fn allows(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    /// The subresource named `name`.
    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// The storage key prefix of this resource: `/registry/<group>/<resource>/`. Objects are
    /// stored under `<prefix><namespace>/<name>` or `<prefix><name>`.
    pub fn key_prefix(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        format!("/registry/{group}/{}/", self.resource)
    }
}

const fn sub(
    name: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
) -> Subresource {
    Subresource {
        name,
        group: None,
        version: None,
        kind,
        verbs,
    }
}

const fn status(kind: &'static str) -> Subresource {
    sub("status", kind, GPU)
}

const SCALE: Subresource = Subresource {
    name: "scale",
    group: Some("autoscaling"),
    version: Some("v1"),
    kind: "Scale",
    verbs: GPU,
};

const PROXY_VERBS: &[&str] = &["create", "delete", "get", "patch", "update"];
const CONNECT_VERBS: &[&str] = &["create", "get"];

#[allow(clippy::too_many_arguments)]
const fn r(
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    kind: &'static str,
    singular: &'static str,
    namespaced: bool,
    verbs: &'static [&'static str],
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [Subresource],
    storage_version_hash: Option<&'static str>,
) -> ResourceSpec {
    ResourceSpec {
        group,
        version,
        resource,
        kind,
        singular,
        namespaced,
        verbs,
        short_names,
        categories,
        subresources,
        storage_version_hash,
    }
}

const ALL: &[&str] = &["all"];
const EXT: &[&str] = &["api-extensions"];
const NONE: &[&str] = &[];
const NOSUB: &[Subresource] = &[];

/// Every served resource, in discovery order: core first, then groups by upstream priority,
/// resources sorted by name within a group/version.
#[rustfmt::skip]
pub static RESOURCES: &[ResourceSpec] = &[
    // core/v1
    r("", "v1", "bindings", "Binding", "binding", true, CREATE_ONLY, NONE, NONE, NOSUB, None),
    r("", "v1", "configmaps", "ConfigMap", "configmap", true, CRUD, &["cm"], NONE, NOSUB, Some("qFsyl6wFWjQ=")),
    r("", "v1", "endpoints", "Endpoints", "endpoints", true, CRUD, &["ep"], NONE, NOSUB, Some("fWeeMqaN/OA=")),
    r("", "v1", "events", "Event", "event", true, CRUD, &["ev"], NONE, NOSUB, Some("r2yiGXH7wu8=")),
    r("", "v1", "limitranges", "LimitRange", "limitrange", true, CRUD, &["limits"], NONE, NOSUB, Some("EBKMFVe6cwo=")),
    r("", "v1", "namespaces", "Namespace", "namespace", false, CRUD_NO_COLLECTION, &["ns"], NONE,
        &[sub("finalize", "Namespace", &["update"]), status("Namespace")], Some("Q3oi5N2YM8M=")),
    r("", "v1", "nodes", "Node", "node", false, CRUD, &["no"], NONE,
        &[sub("proxy", "NodeProxyOptions", PROXY_VERBS), status("Node")], Some("XwShjMxG9Fs=")),
    r("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", "persistentvolumeclaim", true, CRUD, &["pvc"], NONE,
        &[status("PersistentVolumeClaim")], Some("QWTyNDq0dC4=")),
    r("", "v1", "persistentvolumes", "PersistentVolume", "persistentvolume", false, CRUD, &["pv"], NONE,
        &[status("PersistentVolume")], Some("HN/zwEC+JgM=")),
    r("", "v1", "pods", "Pod", "pod", true, CRUD, &["po"], ALL,
        &[
            sub("attach", "PodAttachOptions", CONNECT_VERBS),
            sub("binding", "Binding", CREATE_ONLY),
            sub("ephemeralcontainers", "Pod", GPU),
            Subresource { name: "eviction", group: Some("policy"), version: Some("v1"), kind: "Eviction", verbs: CREATE_ONLY },
            sub("exec", "PodExecOptions", CONNECT_VERBS),
            sub("log", "Pod", &["get"]),
            sub("portforward", "PodPortForwardOptions", CONNECT_VERBS),
            sub("proxy", "PodProxyOptions", PROXY_VERBS),
            sub("resize", "Pod", GPU),
            status("Pod"),
        ], Some("xPOwRZ+Yhw8=")),
    r("", "v1", "podtemplates", "PodTemplate", "podtemplate", true, CRUD, NONE, NONE, NOSUB, Some("LIXB2x4IFpk=")),
    r("", "v1", "replicationcontrollers", "ReplicationController", "replicationcontroller", true, CRUD, &["rc"], ALL,
        &[SCALE, status("ReplicationController")], Some("Jond2If31h0=")),
    r("", "v1", "resourcequotas", "ResourceQuota", "resourcequota", true, CRUD, &["quota"], NONE,
        &[status("ResourceQuota")], Some("8uhSgffRX6w=")),
    r("", "v1", "secrets", "Secret", "secret", true, CRUD, NONE, NONE, NOSUB, Some("S6u1pOWzb84=")),
    r("", "v1", "serviceaccounts", "ServiceAccount", "serviceaccount", true, CRUD, &["sa"], NONE,
        &[Subresource { name: "token", group: Some("authentication.k8s.io"), version: Some("v1"), kind: "TokenRequest", verbs: CREATE_ONLY }],
        Some("pbx9ZvyFpBE=")),
    r("", "v1", "services", "Service", "service", true, CRUD, &["svc"], ALL,
        &[sub("proxy", "ServiceProxyOptions", PROXY_VERBS), status("Service")], Some("0/CO1lhkEBI=")),
    // apps/v1
    r("apps", "v1", "controllerrevisions", "ControllerRevision", "controllerrevision", true, CRUD, NONE, NONE, NOSUB, Some("85nkx63pcBU=")),
    r("apps", "v1", "daemonsets", "DaemonSet", "daemonset", true, CRUD, &["ds"], ALL, &[status("DaemonSet")], Some("dd7pWHUlMKQ=")),
    r("apps", "v1", "deployments", "Deployment", "deployment", true, CRUD, &["deploy"], ALL, &[SCALE, status("Deployment")], Some("8aSe+NMegvE=")),
    r("apps", "v1", "replicasets", "ReplicaSet", "replicaset", true, CRUD, &["rs"], ALL, &[SCALE, status("ReplicaSet")], Some("P1RzHs8/mWQ=")),
    r("apps", "v1", "statefulsets", "StatefulSet", "statefulset", true, CRUD, &["sts"], ALL, &[SCALE, status("StatefulSet")], Some("H+vl74LkKdo=")),
    // events.k8s.io/v1
    r("events.k8s.io", "v1", "events", "Event", "event", true, CRUD, &["ev"], NONE, NOSUB, None),
    // authentication.k8s.io/v1
    r("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview", "selfsubjectreview", false, CREATE_ONLY, NONE, NONE, NOSUB, None),
    r("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", "tokenreview", false, CREATE_ONLY, NONE, NONE, NOSUB, None),
    // authorization.k8s.io/v1
    r("authorization.k8s.io", "v1", "localsubjectaccessreviews", "LocalSubjectAccessReview", "localsubjectaccessreview", true, CREATE_ONLY, NONE, NONE, NOSUB, None),
    r("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", "selfsubjectaccessreview", false, CREATE_ONLY, NONE, NONE, NOSUB, None),
    r("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview", "selfsubjectrulesreview", false, CREATE_ONLY, NONE, NONE, NOSUB, None),
    r("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", "subjectaccessreview", false, CREATE_ONLY, NONE, NONE, NOSUB, None),
    // autoscaling/v2
    r("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", "horizontalpodautoscaler", true, CRUD, &["hpa"], ALL,
        &[status("HorizontalPodAutoscaler")], None),
    // batch/v1
    r("batch", "v1", "cronjobs", "CronJob", "cronjob", true, CRUD, &["cj"], ALL, &[status("CronJob")], None),
    r("batch", "v1", "jobs", "Job", "job", true, CRUD, NONE, ALL, &[status("Job")], None),
    // certificates.k8s.io/v1
    r("certificates.k8s.io", "v1", "certificatesigningrequests", "CertificateSigningRequest", "certificatesigningrequest", false, CRUD, &["csr"], NONE,
        &[sub("approval", "CertificateSigningRequest", GPU), status("CertificateSigningRequest")], None),
    // networking.k8s.io/v1
    r("networking.k8s.io", "v1", "ingressclasses", "IngressClass", "ingressclass", false, CRUD, NONE, NONE, NOSUB, None),
    r("networking.k8s.io", "v1", "ingresses", "Ingress", "ingress", true, CRUD, &["ing"], NONE, &[status("Ingress")], None),
    r("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", "networkpolicy", true, CRUD, &["netpol"], NONE, NOSUB, None),
    // policy/v1
    r("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", "poddisruptionbudget", true, CRUD, &["pdb"], NONE,
        &[status("PodDisruptionBudget")], None),
    // rbac.authorization.k8s.io/v1
    r("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", "clusterrolebinding", false, CRUD, NONE, NONE, NOSUB, None),
    r("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", "clusterrole", false, CRUD, NONE, NONE, NOSUB, None),
    r("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", "rolebinding", true, CRUD, NONE, NONE, NOSUB, None),
    r("rbac.authorization.k8s.io", "v1", "roles", "Role", "role", true, CRUD, NONE, NONE, NOSUB, None),
    // storage.k8s.io/v1
    r("storage.k8s.io", "v1", "csidrivers", "CSIDriver", "csidriver", false, CRUD, NONE, NONE, NOSUB, None),
    r("storage.k8s.io", "v1", "csinodes", "CSINode", "csinode", false, CRUD, NONE, NONE, NOSUB, None),
    r("storage.k8s.io", "v1", "csistoragecapacities", "CSIStorageCapacity", "csistoragecapacity", true, CRUD, NONE, NONE, NOSUB, None),
    r("storage.k8s.io", "v1", "storageclasses", "StorageClass", "storageclass", false, CRUD, &["sc"], NONE, NOSUB, None),
    r("storage.k8s.io", "v1", "volumeattachments", "VolumeAttachment", "volumeattachment", false, CRUD, NONE, NONE,
        &[status("VolumeAttachment")], None),
    // admissionregistration.k8s.io/v1
    r("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", "MutatingWebhookConfiguration", "mutatingwebhookconfiguration", false, CRUD, NONE, EXT, NOSUB, None),
    r("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", "ValidatingWebhookConfiguration", "validatingwebhookconfiguration", false, CRUD, NONE, EXT, NOSUB, None),
    // apiextensions.k8s.io/v1
    r("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", "customresourcedefinition", false, CRUD, &["crd", "crds"], EXT,
        &[status("CustomResourceDefinition")], None),
    // scheduling.k8s.io/v1
    r("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", "priorityclass", false, CRUD, &["pc"], NONE, NOSUB, None),
    // coordination.k8s.io/v1
    r("coordination.k8s.io", "v1", "leases", "Lease", "lease", true, CRUD, NONE, NONE, NOSUB, None),
    // node.k8s.io/v1
    r("node.k8s.io", "v1", "runtimeclasses", "RuntimeClass", "runtimeclass", false, CRUD, NONE, NONE, NOSUB, None),
    // discovery.k8s.io/v1
    r("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", "endpointslice", true, CRUD, NONE, NONE, NOSUB, None),
];

/// The non-core groups in discovery order, each with its (single) served version.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for spec in RESOURCES.iter().filter(|s| !s.group.is_empty()) {
        if !out.iter().any(|(g, _)| *g == spec.group) {
            out.push((spec.group, spec.version));
        }
    }
    out
}

/// The resource served at `group/version/resource`.
pub fn lookup(group: &str, version: &str, resource: &str) -> Option<&'static ResourceSpec> {
    RESOURCES
        .iter()
        .find(|s| s.group == group && s.version == version && s.resource == resource)
}

/// The resources of one group/version, in discovery order.
pub fn resources_of(group: &str, version: &str) -> impl Iterator<Item = &'static ResourceSpec> {
    let group = group.to_string();
    let version = version.to_string();
    RESOURCES
        .iter()
        .filter(move |s| s.group == group && s.version == version)
}

/// The resource whose objects have `kind` in `group` (the first match in discovery order).
pub fn by_kind(group: &str, kind: &str) -> Option<&'static ResourceSpec> {
    RESOURCES
        .iter()
        .find(|s| s.group == group && s.kind == kind)
}

/// Split an `apiVersion` into (group, version).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_sorted_by_name_within_a_group_version() {
        for (group, version) in std::iter::once(("", "v1")).chain(groups()) {
            let names: Vec<_> = resources_of(group, version).map(|s| s.resource).collect();
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(names, sorted, "{group}/{version}");
        }
    }

    #[test]
    fn every_resource_appears_once() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert!(
                    !(a.group == b.group && a.resource == b.resource),
                    "{}",
                    a.resource
                );
            }
        }
    }

    #[test]
    fn qualified_names_follow_upstream() {
        let d = lookup("apps", "v1", "deployments").expect("deployments are served");
        assert_eq!(d.qualified_resource(), "deployments.apps");
        assert_eq!(d.qualified_kind(), "Deployment.apps");
        let p = lookup("", "v1", "pods").expect("pods are served");
        assert_eq!(p.qualified_resource(), "pods");
        assert_eq!(p.key_prefix(), "/registry/core/pods/");
        assert!(
            !lookup("authorization.k8s.io", "v1", "selfsubjectaccessreviews")
                .expect("served")
                .is_stored()
        );
    }
}
