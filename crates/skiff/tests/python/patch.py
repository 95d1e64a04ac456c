"""Patches through the official client: a dict body goes as a strategic merge patch (containers
merge by name), a list as a JSON patch, and merge patches on request."""

from kubernetes import client

from common import api_client, deployment

api = api_client()
core = client.CoreV1Api(api)
apps = client.AppsV1Api(api)
NS = "default"

apps.create_namespaced_deployment(
    NS, deployment("web", {"app": "web"}, [("app", "busybox:1.36"), ("sidecar", "busybox:1.36")])
)

# The client sends a dict as application/strategic-merge-patch+json: the containers list merges
# by name, so the sidecar survives and only the app image changes.
out = apps.patch_namespaced_deployment(
    "web",
    NS,
    {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "busybox:1.37"}]}}}},
)
cs = [(c.name, c.image) for c in out.spec.template.spec.containers]
assert cs == [("app", "busybox:1.37"), ("sidecar", "busybox:1.36")], cs
assert out.metadata.generation == 2, out.metadata

# $patch: delete removes one container by name.
out = apps.patch_namespaced_deployment(
    "web", NS, {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}
)
assert [c.name for c in out.spec.template.spec.containers] == ["app"], out.spec.template.spec.containers

# A list goes as a JSON patch.
out = apps.patch_namespaced_deployment("web", NS, [{"op": "replace", "path": "/spec/replicas", "value": 4}])
assert out.spec.replicas == 4
out = apps.patch_namespaced_deployment(
    "web", NS, [{"op": "add", "path": "/metadata/labels/extra", "value": "yes"}]
)
assert out.metadata.labels == {"app": "web", "extra": "yes"}, out.metadata.labels
gen = out.metadata.generation

# Labels only: generation stays.
out = apps.patch_namespaced_deployment("web", NS, {"metadata": {"labels": {"extra": None}}})
assert out.metadata.labels == {"app": "web"}, out.metadata.labels
assert out.metadata.generation == gen

# A failing JSON patch test op leaves the object alone.
try:
    apps.patch_namespaced_deployment("web", NS, [{"op": "test", "path": "/spec/replicas", "value": 99}])
    raise AssertionError("test op should fail")
except client.rest.ApiException as e:
    assert e.status == 422, e
assert apps.read_namespaced_deployment("web", NS).spec.replicas == 4

# Merge patch on a ConfigMap: this client version has no per-call content type, but a default
# header overrides the one it picks. null deletes a key.
core.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="m"), data={"a": "1", "b": "2"}))
merge_api = api_client()
merge_api.set_default_header("Content-Type", "application/merge-patch+json")
out = client.CoreV1Api(merge_api).patch_namespaced_config_map("m", NS, {"data": {"a": None, "c": "3"}})
assert out.data == {"b": "2", "c": "3"}, out.data

# Status subresource patch on the deployment changes status only.
out = apps.patch_namespaced_deployment_status("web", NS, {"status": {"observedGeneration": 7}, "spec": {"replicas": 9}})
assert out.status.observed_generation == 7, out.status
assert out.spec.replicas == 4, out.spec
print("patch ok")
