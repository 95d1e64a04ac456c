"""A watch from a resourceVersion receives ADDED, MODIFIED and DELETED in order."""

import threading

from kubernetes import client, watch

from common import api_client

api = api_client()
core = client.CoreV1Api(api)
NS = "default"

# Writes before the start point must not be replayed.
core.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="before")))
start_rv = core.list_namespaced_config_map(NS).metadata.resource_version

cm = core.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w"), data={"v": "0"}))
rvs = [cm.metadata.resource_version]
for i in range(1, 4):
    cm.data = {"v": str(i)}
    cm = core.replace_namespaced_config_map("w", NS, cm)
    rvs.append(cm.metadata.resource_version)
deleted = core.delete_namespaced_config_map("w", NS)

w = watch.Watch()
events = []
for ev in w.stream(core.list_namespaced_config_map, NS, resource_version=start_rv, timeout_seconds=5):
    obj = ev["object"]
    events.append((ev["type"], obj.metadata.name, obj.metadata.resource_version, (obj.data or {}).get("v")))
    if ev["type"] == "DELETED":
        w.stop()

types = [e[0] for e in events]
assert types == ["ADDED", "MODIFIED", "MODIFIED", "MODIFIED", "DELETED"], events
assert all(e[1] == "w" for e in events), events
assert [e[3] for e in events[:4]] == ["0", "1", "2", "3"], events
assert [e[2] for e in events[:4]] == rvs, (events, rvs)
got_rvs = [int(e[2]) for e in events]
assert got_rvs == sorted(got_rvs) and len(set(got_rvs)) == len(got_rvs), events

# A live watch (from the list's resourceVersion) sees changes made after it starts.
start_rv = core.list_namespaced_config_map(NS).metadata.resource_version
live = []
ready = threading.Event()


def consume():
    w2 = watch.Watch()
    for ev in w2.stream(
        core.list_namespaced_config_map, NS, resource_version=start_rv, timeout_seconds=10, label_selector="live=yes"
    ):
        live.append((ev["type"], ev["object"].metadata.name))
        if ev["type"] == "DELETED":
            w2.stop()


t = threading.Thread(target=consume)
t.start()
core.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="other")))
core.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="l", labels={"live": "yes"})))
core.patch_namespaced_config_map("l", NS, {"data": {"x": "1"}})
core.delete_namespaced_config_map("l", NS)
t.join(15)
assert not t.is_alive(), "live watch did not end"
assert live == [("ADDED", "l"), ("MODIFIED", "l"), ("DELETED", "l")], live
print("watch_from_rv ok")
