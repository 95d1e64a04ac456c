"""Shared setup for the Python-client proof scripts: a client from the kubeconfig in argv[1]."""

import sys
import time

from kubernetes import client, config
from kubernetes.client.rest import ApiException


def api_client():
    if len(sys.argv) < 2:
        sys.exit("usage: script.py <kubeconfig>")
    return config.new_client_from_config(config_file=sys.argv[1])


def expect_api_error(status, reason, fn, *args, **kwargs):
    """Call fn and require an ApiException with this HTTP status and Status reason."""
    import json

    try:
        fn(*args, **kwargs)
    except ApiException as e:
        assert e.status == status, f"want HTTP {status}, got {e.status}: {e.body}"
        body = json.loads(e.body) if e.body else {}
        if reason is not None:
            assert body.get("reason") == reason, f"want reason {reason}: {body}"
            assert body.get("kind") == "Status", body
            assert body.get("code") == status, body
        return body
    raise AssertionError(f"{fn.__name__} succeeded; wanted HTTP {status} {reason}")


def eventually(what, fn, timeout=20.0):
    """Poll fn until it returns a truthy value; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def deployment(name, labels, containers):
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[
                        client.V1Container(name=n, image=img) for n, img in containers
                    ]
                ),
            ),
        ),
    )
