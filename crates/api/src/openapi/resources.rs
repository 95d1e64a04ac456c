//! The built-in kinds published under `/openapi/v3`: for each, its resource name, scope, verbs
//! and the subresources that get their own paths (the 1.33 set of api-facts.md §1.3, limited to
//! what k8s-openapi has types for).

use std::any::TypeId;

use k8s_openapi::api::{
    admissionregistration::v1 as admissionregistration, apps::v1 as apps,
    authentication::v1 as authentication, authorization::v1 as authorization,
    autoscaling::v1 as autoscaling_v1, autoscaling::v2 as autoscaling_v2, batch::v1 as batch,
    certificates::v1 as certificates, coordination::v1 as coordination, core::v1 as core,
    discovery::v1 as discovery, events::v1 as events, flowcontrol::v1 as flowcontrol,
    networking::v1 as networking, node::v1 as node, policy::v1 as policy, rbac::v1 as rbac,
    scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
use k8s_openapi::{NamespaceResourceScope, Resource};
use schemars::{JsonSchema, Schema, SchemaGenerator};

/// Adds a type's schema (and everything it references) to a generator, returning its `$ref`.
pub(super) type Register = fn(&mut SchemaGenerator) -> Schema;

/// The verbs of a resource's own paths.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Verbs {
    /// create, get, list, update, patch, delete, deletecollection.
    All,
    /// Like `All` but without deletecollection (namespaces).
    NoDeleteCollection,
    /// get and list only (componentstatuses).
    GetList,
    /// create only (bindings, reviews).
    Create,
}

/// The verbs of a subresource path.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum SubVerbs {
    /// get, update, patch (status, scale, resize, ephemeralcontainers, approval).
    GetPutPatch,
    /// update only (namespaces/finalize).
    Put,
    /// create only (pods/eviction, pods/binding, serviceaccounts/token).
    Post,
}

/// A Go type with a group-version-kind.
#[derive(Clone, Copy)]
pub(super) struct TypeRef {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub register: Register,
}

/// A subresource with its own path below `{name}`.
pub(super) struct Subresource {
    pub name: &'static str,
    pub verbs: SubVerbs,
    /// The body and response kind when it is not the resource's own (Scale, Eviction, ...).
    pub kind: Option<TypeRef>,
}

/// One resource of a group-version.
pub(super) struct KindEntry {
    pub ty: TypeRef,
    pub plural: &'static str,
    pub namespaced: bool,
    pub verbs: Verbs,
    pub subresources: Vec<Subresource>,
}

impl KindEntry {
    /// The document path of the group-version: `api/v1` or `apis/<group>/<version>`.
    pub fn gv_path(&self) -> String {
        gv_path(self.ty.group, self.ty.version)
    }
}

/// The document path of a group-version: `api/v1` or `apis/<group>/<version>`.
pub(super) fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn subschema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

fn ty<T: Resource + JsonSchema>() -> TypeRef {
    TypeRef {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        register: subschema::<T>,
    }
}

fn kind<T>(verbs: Verbs, subresources: Vec<Subresource>) -> KindEntry
where
    T: Resource + JsonSchema,
    T::Scope: 'static,
{
    KindEntry {
        ty: ty::<T>(),
        plural: T::URL_PATH_SEGMENT,
        namespaced: TypeId::of::<T::Scope>() == TypeId::of::<NamespaceResourceScope>(),
        verbs,
        subresources,
    }
}

fn sub(name: &'static str, verbs: SubVerbs) -> Subresource {
    Subresource {
        name,
        verbs,
        kind: None,
    }
}

fn status() -> Subresource {
    sub("status", SubVerbs::GetPutPatch)
}

fn scale() -> Subresource {
    Subresource {
        name: "scale",
        verbs: SubVerbs::GetPutPatch,
        kind: Some(ty::<autoscaling_v1::Scale>()),
    }
}

/// Every published resource, in discovery order within each group-version.
pub(super) fn all_kinds() -> Vec<KindEntry> {
    use Verbs::{All, Create, GetList, NoDeleteCollection};
    vec![
        // v1
        kind::<core::Binding>(Create, vec![]),
        kind::<core::ComponentStatus>(GetList, vec![]),
        kind::<core::ConfigMap>(All, vec![]),
        kind::<core::Endpoints>(All, vec![]),
        kind::<core::Event>(All, vec![]),
        kind::<core::LimitRange>(All, vec![]),
        kind::<core::Namespace>(
            NoDeleteCollection,
            vec![sub("finalize", SubVerbs::Put), status()],
        ),
        kind::<core::Node>(All, vec![status()]),
        kind::<core::PersistentVolumeClaim>(All, vec![status()]),
        kind::<core::PersistentVolume>(All, vec![status()]),
        kind::<core::Pod>(
            All,
            vec![
                Subresource {
                    name: "binding",
                    verbs: SubVerbs::Post,
                    kind: Some(ty::<core::Binding>()),
                },
                sub("ephemeralcontainers", SubVerbs::GetPutPatch),
                Subresource {
                    name: "eviction",
                    verbs: SubVerbs::Post,
                    kind: Some(ty::<policy::Eviction>()),
                },
                sub("resize", SubVerbs::GetPutPatch),
                status(),
            ],
        ),
        kind::<core::PodTemplate>(All, vec![]),
        kind::<core::ReplicationController>(All, vec![scale(), status()]),
        kind::<core::ResourceQuota>(All, vec![status()]),
        kind::<core::Secret>(All, vec![]),
        kind::<core::ServiceAccount>(
            All,
            vec![Subresource {
                name: "token",
                verbs: SubVerbs::Post,
                kind: Some(ty::<authentication::TokenRequest>()),
            }],
        ),
        kind::<core::Service>(All, vec![status()]),
        // apps/v1
        kind::<apps::ControllerRevision>(All, vec![]),
        kind::<apps::DaemonSet>(All, vec![status()]),
        kind::<apps::Deployment>(All, vec![scale(), status()]),
        kind::<apps::ReplicaSet>(All, vec![scale(), status()]),
        kind::<apps::StatefulSet>(All, vec![scale(), status()]),
        // batch/v1
        kind::<batch::CronJob>(All, vec![status()]),
        kind::<batch::Job>(All, vec![status()]),
        // autoscaling
        kind::<autoscaling_v2::HorizontalPodAutoscaler>(All, vec![status()]),
        kind::<autoscaling_v1::HorizontalPodAutoscaler>(All, vec![status()]),
        // discovery.k8s.io/v1, coordination.k8s.io/v1
        kind::<discovery::EndpointSlice>(All, vec![]),
        kind::<coordination::Lease>(All, vec![]),
        // storage.k8s.io/v1
        kind::<storage::CSIDriver>(All, vec![]),
        kind::<storage::CSINode>(All, vec![]),
        kind::<storage::CSIStorageCapacity>(All, vec![]),
        kind::<storage::StorageClass>(All, vec![]),
        kind::<storage::VolumeAttachment>(All, vec![status()]),
        // scheduling.k8s.io/v1, policy/v1, events.k8s.io/v1
        kind::<scheduling::PriorityClass>(All, vec![]),
        kind::<policy::PodDisruptionBudget>(All, vec![status()]),
        kind::<events::Event>(All, vec![]),
        // rbac.authorization.k8s.io/v1
        kind::<rbac::ClusterRoleBinding>(All, vec![]),
        kind::<rbac::ClusterRole>(All, vec![]),
        kind::<rbac::RoleBinding>(All, vec![]),
        kind::<rbac::Role>(All, vec![]),
        // authorization.k8s.io/v1, authentication.k8s.io/v1
        kind::<authorization::LocalSubjectAccessReview>(Create, vec![]),
        kind::<authorization::SelfSubjectAccessReview>(Create, vec![]),
        kind::<authorization::SelfSubjectRulesReview>(Create, vec![]),
        kind::<authorization::SubjectAccessReview>(Create, vec![]),
        kind::<authentication::SelfSubjectReview>(Create, vec![]),
        kind::<authentication::TokenReview>(Create, vec![]),
        // networking.k8s.io/v1
        kind::<networking::IngressClass>(All, vec![]),
        kind::<networking::Ingress>(All, vec![status()]),
        kind::<networking::IPAddress>(All, vec![]),
        kind::<networking::NetworkPolicy>(All, vec![]),
        kind::<networking::ServiceCIDR>(All, vec![status()]),
        // apiextensions.k8s.io/v1, node.k8s.io/v1, certificates.k8s.io/v1
        kind::<apiextensions::CustomResourceDefinition>(All, vec![status()]),
        kind::<node::RuntimeClass>(All, vec![]),
        kind::<certificates::CertificateSigningRequest>(
            All,
            vec![sub("approval", SubVerbs::GetPutPatch), status()],
        ),
        // admissionregistration.k8s.io/v1
        kind::<admissionregistration::MutatingWebhookConfiguration>(All, vec![]),
        kind::<admissionregistration::ValidatingAdmissionPolicy>(All, vec![status()]),
        kind::<admissionregistration::ValidatingAdmissionPolicyBinding>(All, vec![]),
        kind::<admissionregistration::ValidatingWebhookConfiguration>(All, vec![]),
        // flowcontrol.apiserver.k8s.io/v1, apiregistration.k8s.io/v1
        kind::<flowcontrol::FlowSchema>(All, vec![status()]),
        kind::<flowcontrol::PriorityLevelConfiguration>(All, vec![status()]),
        kind::<apiregistration::APIService>(All, vec![status()]),
    ]
}
