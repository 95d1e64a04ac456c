"""The client sees upstream's errors: 409 Conflict and AlreadyExists, 404, 422 with causes."""

from kubernetes import client

from common import api_client, expect_api_error

api = api_client()
core = client.CoreV1Api(api)
apps = client.AppsV1Api(api)
NS = "default"

cm = core.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"), data={"v": "1"}))
stale_rv = cm.metadata.resource_version
cm.data = {"v": "2"}
core.replace_namespaced_config_map("c", NS, cm)

# Replace with the stale resourceVersion: 409 Conflict, object unchanged.
stale = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c", resource_version=stale_rv), data={"v": "3"})
body = expect_api_error(409, "Conflict", core.replace_namespaced_config_map, "c", NS, stale)
assert "the object has been modified" in body["message"], body
assert body["details"] == {"name": "c", "kind": "configmaps"}, body
assert core.read_namespaced_config_map("c", NS).data == {"v": "2"}

# Create of an existing name: 409 AlreadyExists.
body = expect_api_error(
    409, "AlreadyExists", core.create_namespaced_config_map, NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"))
)
assert body["message"] == 'configmaps "c" already exists', body
dep = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="d"),
    spec=client.V1DeploymentSpec(
        selector=client.V1LabelSelector(match_labels={"a": "b"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"a": "b"}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
        ),
    ),
)
apps.create_namespaced_deployment(NS, dep)
body = expect_api_error(409, "AlreadyExists", apps.create_namespaced_deployment, NS, dep)
assert body["message"] == 'deployments.apps "d" already exists', body
assert body["details"]["group"] == "apps", body

# Get of a missing object or namespace: 404 NotFound naming it.
body = expect_api_error(404, "NotFound", core.read_namespaced_config_map, "missing", NS)
assert body["message"] == 'configmaps "missing" not found', body
body = expect_api_error(404, "NotFound", apps.read_namespaced_deployment, "missing", NS)
assert body["message"] == 'deployments.apps "missing" not found', body
body = expect_api_error(404, "NotFound", core.read_namespace, "missing")
assert body["message"] == 'namespaces "missing" not found', body
body = expect_api_error(404, "NotFound", core.delete_namespaced_config_map, "missing", NS)

# A pod without containers: 422 Invalid with a cause on spec.containers; nothing stored.
bad = client.V1Pod(metadata=client.V1ObjectMeta(name="empty"), spec=client.V1PodSpec(containers=[]))
body = expect_api_error(422, "Invalid", core.create_namespaced_pod, NS, bad)
assert body["message"].startswith('Pod "empty" is invalid: '), body
causes = body["details"]["causes"]
assert any(c["field"] == "spec.containers" and c["reason"] == "FieldValueRequired" for c in causes), causes
assert body["details"]["name"] == "empty" and body["details"]["kind"] == "Pod", body
expect_api_error(404, "NotFound", core.read_namespaced_pod, "empty", NS)

# An invalid update is refused and leaves the object as it was.
dep = apps.read_namespaced_deployment("d", NS)
dep.spec.replicas = -1
body = expect_api_error(422, "Invalid", apps.replace_namespaced_deployment, "d", NS, dep)
assert any(c["field"] == "spec.replicas" for c in body["details"]["causes"]), body
assert apps.read_namespaced_deployment("d", NS).spec.replicas == 1
print("errors ok")
