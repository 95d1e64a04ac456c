"""CRUD on several kinds through the official client, checking the fields the server owns."""

import base64

from kubernetes import client

from common import api_client, deployment, eventually, expect_api_error

api = api_client()
core = client.CoreV1Api(api)
apps = client.AppsV1Api(api)
NS = "crud"

# Namespace: created Active with the metadata.name label, readable, listed.
ns = core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
assert ns.metadata.name == NS
assert ns.metadata.uid, ns.metadata
assert ns.metadata.resource_version, ns.metadata
assert ns.metadata.creation_timestamp is not None
assert ns.metadata.labels.get("kubernetes.io/metadata.name") == NS, ns.metadata.labels
assert ns.status.phase == "Active", ns.status
assert NS in [n.metadata.name for n in core.list_namespace().items]

# ConfigMap: create, read, replace, delete.
cm = core.create_namespaced_config_map(
    NS,
    client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg", labels={"a": "1"}), data={"k": "v"}),
)
assert cm.metadata.namespace == NS
assert cm.data == {"k": "v"}
got = core.read_namespaced_config_map("cfg", NS)
assert got.metadata.uid == cm.metadata.uid
assert got.metadata.resource_version == cm.metadata.resource_version
got.data["k2"] = "v2"
replaced = core.replace_namespaced_config_map("cfg", NS, got)
assert replaced.data == {"k": "v", "k2": "v2"}, replaced.data
assert int(replaced.metadata.resource_version) > int(cm.metadata.resource_version)
assert replaced.metadata.uid == cm.metadata.uid
assert replaced.metadata.creation_timestamp == cm.metadata.creation_timestamp
core.delete_namespaced_config_map("cfg", NS)
expect_api_error(404, "NotFound", core.read_namespaced_config_map, "cfg", NS)

# Secret: stringData folds into base64 data; type defaults to Opaque.
sec = core.create_namespaced_secret(
    NS,
    client.V1Secret(metadata=client.V1ObjectMeta(name="sec"), string_data={"password": "hunter2"}),
)
assert sec.type == "Opaque", sec.type
assert base64.b64decode(sec.data["password"]) == b"hunter2", sec.data
assert not sec.string_data
assert core.read_namespaced_secret("sec", NS).data == sec.data
core.delete_namespaced_secret("sec", NS)

# Deployment via AppsV1Api: generation 1, defaults filled in, replace bumps generation.
dep = apps.create_namespaced_deployment(NS, deployment("web", {"app": "web"}, [("app", "busybox:1.36")]))
assert dep.metadata.generation == 1, dep.metadata
assert dep.spec.strategy.type == "RollingUpdate", dep.spec.strategy
assert dep.spec.revision_history_limit == 10
assert dep.spec.template.spec.restart_policy == "Always"
assert dep.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"
dep = apps.read_namespaced_deployment("web", NS)
dep.spec.replicas = 3
dep2 = apps.replace_namespaced_deployment("web", NS, dep)
assert dep2.spec.replicas == 3
assert dep2.metadata.generation == 2, dep2.metadata
assert [d.metadata.name for d in apps.list_namespaced_deployment(NS).items] == ["web"]
apps.delete_namespaced_deployment("web", NS)
expect_api_error(404, "NotFound", apps.read_namespaced_deployment, "web", NS)

# Service: a ClusterIP is allocated from 10.96.0.0/12 and kept across replace.
svc = core.create_namespaced_service(
    NS,
    client.V1Service(
        metadata=client.V1ObjectMeta(name="svc"),
        spec=client.V1ServiceSpec(selector={"app": "web"}, ports=[client.V1ServicePort(port=80, target_port=8080)]),
    ),
)
ip = svc.spec.cluster_ip
assert ip and ip.startswith("10."), svc.spec
assert svc.spec.cluster_i_ps == [ip]
assert svc.spec.type == "ClusterIP"
assert svc.spec.ports[0].protocol == "TCP"
assert svc.spec.ports[0].target_port == 8080
svc.metadata.labels = {"tier": "front"}
svc2 = core.replace_namespaced_service("svc", NS, svc)
assert svc2.spec.cluster_ip == ip
assert svc2.metadata.labels == {"tier": "front"}
core.delete_namespaced_service("svc", NS)

# Pod: Pending with a QoS class; an unscheduled pod is deleted at once.
pod = core.create_namespaced_pod(
    NS,
    client.V1Pod(
        metadata=client.V1ObjectMeta(name="p"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox:1.36")]),
    ),
)
assert pod.status.phase == "Pending", pod.status
assert pod.status.qos_class == "BestEffort", pod.status
assert pod.spec.termination_grace_period_seconds == 30
assert pod.spec.dns_policy == "ClusterFirst"
core.delete_namespaced_pod("p", NS)
eventually("pod p gone", lambda: "p" not in [p.metadata.name for p in core.list_namespaced_pod(NS).items])

# Namespace deletion: Terminating, then gone.
core.delete_namespace(NS)


def ns_gone():
    try:
        core.read_namespace(NS)
        return False
    except client.rest.ApiException as e:
        return e.status == 404


eventually("namespace crud gone", ns_gone, timeout=30)
print("crud ok")
