"""Lists filtered by label and field selectors through the official client."""

from kubernetes import client

from common import api_client

api = api_client()
core = client.CoreV1Api(api)
NS = "sel"

core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
for name, labels in [
    ("a", {"app": "web", "tier": "front"}),
    ("b", {"app": "web", "tier": "back"}),
    ("c", {"app": "db"}),
    ("d", {}),
]:
    core.create_namespaced_config_map(
        NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels), data={"n": name})
    )
core.create_namespaced_config_map(
    "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="a", labels={"app": "web"}))
)


def names(lst):
    return sorted(i.metadata.name for i in lst.items)


cases = {
    "app=web": ["a", "b"],
    "app!=web": ["c", "d"],
    "app in (web,db)": ["a", "b", "c"],
    "app notin (web)": ["c", "d"],
    "tier": ["a", "b"],
    "!tier": ["c", "d"],
    "app=web,tier=back": ["b"],
    "app=nothing": [],
}
for sel, want in cases.items():
    got = names(core.list_namespaced_config_map(NS, label_selector=sel))
    assert got == want, f"labelSelector {sel!r}: got {got}, want {want}"

assert names(core.list_namespaced_config_map(NS, field_selector="metadata.name=c")) == ["c"]
assert names(core.list_namespaced_config_map(NS, field_selector="metadata.name!=c")) == ["a", "b", "d"]
assert names(core.list_namespaced_config_map(NS, label_selector="app=web", field_selector="metadata.name!=a")) == ["b"]

# Across namespaces: the label selector and a namespace field selector.
all_web = core.list_config_map_for_all_namespaces(label_selector="app=web")
assert sorted((i.metadata.namespace, i.metadata.name) for i in all_web.items) == [
    ("default", "a"),
    (NS, "a"),
    (NS, "b"),
], all_web.items
in_ns = core.list_config_map_for_all_namespaces(field_selector=f"metadata.namespace={NS}")
assert all(i.metadata.namespace == NS for i in in_ns.items)
assert {"a", "b", "c", "d"} <= {i.metadata.name for i in in_ns.items}, in_ns.items

# Pods by a pod-specific field.
for name, node in [("p1", "n1"), ("p2", "")]:
    spec = client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox:1.36")])
    if node:
        spec.node_name = node
    core.create_namespaced_pod(NS, client.V1Pod(metadata=client.V1ObjectMeta(name=name), spec=spec))
assert names(core.list_namespaced_pod(NS, field_selector="spec.nodeName=n1")) == ["p1"]
assert names(core.list_namespaced_pod(NS, field_selector="spec.nodeName=")) == ["p2"]
assert names(core.list_namespaced_pod(NS, field_selector="status.phase=Pending")) == ["p1", "p2"]
print("list_select ok")
