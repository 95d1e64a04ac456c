"""COMPACTION: a watch from a resourceVersion the server has compacted away gets 410 Gone.

The server runs with `--compaction-interval 1`, so revisions older than about a second are
compacted. The client either sees the 410 as the HTTP status of the watch request, or as an
ERROR event with code 410 that `watch.Watch` turns into ApiException(410) (timeout_seconds
disables its one automatic retry), as upstream's client does."""

import json
import time

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from common import api_client

api = api_client()
core = client.CoreV1Api(api)
NS = "default"

cm = core.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c0"), data={"v": "0"}))
early_rv = cm.metadata.resource_version
for i in range(1, 6):
    core.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"c{i}")))
for i in range(10):
    cm.data = {"v": str(i + 1)}
    cm = core.replace_namespaced_config_map("c0", NS, cm)

# Compaction runs every second up to the revision seen one interval earlier; give it a few
# rounds, and keep writing so later rounds have a newer revision to compact to.
deadline = time.monotonic() + 20
last = None
while time.monotonic() < deadline:
    time.sleep(1)
    cm.data = {"v": "tick"}
    cm = core.replace_namespaced_config_map("c0", NS, cm)
    try:
        events = []
        for ev in watch.Watch().stream(
            core.list_namespaced_config_map, NS, resource_version=early_rv, timeout_seconds=2
        ):
            events.append(ev["type"])
            if len(events) > 30:
                break
        last = f"watch from {early_rv} was served: {events[:10]}"
    except ApiException as e:
        assert e.status == 410, f"want 410, got {e.status}: {e.reason} {e.body}"
        text = f"{e.reason} {e.body or ''}"
        assert "too old resource version" in text or "Expired" in text or "Gone" in text, text
        if e.body:
            body = json.loads(e.body)
            assert body["code"] == 410 and body["reason"] in ("Expired", "Gone"), body
        print(f"410 after compaction: {text.strip()}")
        break
else:
    raise AssertionError(f"no 410 within 20s; last: {last}")

# A list at the compacted revision with Exact match is 410 too; a fresh list still works.
try:
    core.list_namespaced_config_map(NS, resource_version=early_rv, resource_version_match="Exact")
    raise AssertionError("Exact list at a compacted revision succeeded")
except ApiException as e:
    assert e.status == 410, e
assert len(core.list_namespaced_config_map(NS).items) >= 6
print("compaction_410 ok")
