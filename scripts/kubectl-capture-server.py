#!/usr/bin/env python3
"""A fake apiserver that records the request bodies kubectl sends (for protobuf test fixtures).

It answers legacy discovery for the resources `kubectl create <kind>`, `auth can-i` and `drain`
touch, records every POST/PATCH/DELETE body as out/NN-METHOD-path.bin (+ .hdr with the headers),
and answers creates with 400 so nothing else follows. Usage:

    scripts/kubectl-capture-server.py PORT OUTDIR &
    kubectl.1.32 --server=http://127.0.0.1:PORT --cache-dir=$(mktemp -d) create namespace t1
    kubectl.1.32 --server=... create namespace t1 --dry-run=client -o json   # the expected JSON

The fixtures in crates/api/tests/fixtures/protobuf/ were made this way (NAME.bin is the body,
NAME.json the dry-run output of the same command).
"""
import json, sys, os, itertools
from http.server import BaseHTTPRequestHandler, HTTPServer

OUT = sys.argv[2]
counter = itertools.count()

def res(name, kind, namespaced=True, verbs=("create","delete","get","list","patch","update","watch"), short=()):
    return {"name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
            "verbs": list(verbs), "shortNames": list(short)}

CORE = [res("namespaces","Namespace",False), res("configmaps","ConfigMap"), res("secrets","Secret"),
        res("services","Service"), res("serviceaccounts","ServiceAccount"), res("pods","Pod"),
        dict(res("pods/eviction","Eviction", verbs=("create",)), group="policy", version="v1"), res("resourcequotas","ResourceQuota"),
        res("nodes","Node",False)]
GROUPS = {
  "apps/v1": [res("deployments","Deployment"), res("replicasets","ReplicaSet"), res("daemonsets","DaemonSet"), res("statefulsets","StatefulSet")],
  "batch/v1": [res("jobs","Job"), res("cronjobs","CronJob")],
  "rbac.authorization.k8s.io/v1": [res("roles","Role"), res("rolebindings","RoleBinding"), res("clusterroles","ClusterRole",False), res("clusterrolebindings","ClusterRoleBinding",False)],
  "scheduling.k8s.io/v1": [res("priorityclasses","PriorityClass",False)],
  "policy/v1": [res("poddisruptionbudgets","PodDisruptionBudget")],
  "networking.k8s.io/v1": [res("ingresses","Ingress")],
  "authorization.k8s.io/v1": [res("selfsubjectaccessreviews","SelfSubjectAccessReview",False,("create",))],
}

NODE = {"apiVersion":"v1","kind":"Node","metadata":{"name":"n1","uid":"u-n1","resourceVersion":"5"},"spec":{}}
POD = {"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-1","namespace":"default","uid":"3f1e2d3c-0000-4000-8000-000000000001","resourceVersion":"7",
       "ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-rs","uid":"u-rs","controller":True}]},
       "spec":{"nodeName":"n1","containers":[{"name":"c","image":"busybox"}]},"status":{"phase":"Running"}}

class H(BaseHTTPRequestHandler):
    def send(self, code, obj, ct="application/json"):
        body = json.dumps(obj).encode()
        self.send_response(code); self.send_header("Content-Type", ct); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
    def record(self, method):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        i = next(counter)
        name = f"{i:02d}-{method}-" + self.path.split("?")[0].strip("/").replace("/","_")
        with open(os.path.join(OUT, name + ".bin"), "wb") as f: f.write(body)
        with open(os.path.join(OUT, name + ".hdr"), "w") as f: f.write(self.path + "\n" + str(self.headers))
        return body
    def do_GET(self):
        p = self.path.split("?")[0]
        if p == "/version": return self.send(200, {"major":"1","minor":"32","gitVersion":"v1.32.4"})
        if p == "/api": return self.send(200, {"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1"}]})
        if p == "/apis":
            groups=[]
            for gv in GROUPS:
                g,v = gv.split("/")
                groups.append({"name":g,"versions":[{"groupVersion":gv,"version":v}],"preferredVersion":{"groupVersion":gv,"version":v}})
            return self.send(200, {"kind":"APIGroupList","apiVersion":"v1","groups":groups})
        if p == "/api/v1": return self.send(200, {"kind":"APIResourceList","groupVersion":"v1","resources":CORE})
        for gv, rs in GROUPS.items():
            if p == "/apis/" + gv: return self.send(200, {"kind":"APIResourceList","apiVersion":"v1","groupVersion":gv,"resources":rs})
        if p == "/api/v1/nodes/n1": return self.send(200, NODE)
        if p == "/api/v1/pods": return self.send(200, {"apiVersion":"v1","kind":"PodList","metadata":{"resourceVersion":"9"},"items":[POD]})
        if p == "/api/v1/namespaces/default/pods/web-1": return self.send(404, {"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"gone"})
        self.send(404, {"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"nope"})
    def do_PATCH(self):
        self.record("PATCH"); self.send(200, NODE)
    def do_POST(self):
        self.record("POST")
        if "selfsubjectaccessreviews" in self.path:
            return self.send(201, {"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{},"status":{"allowed":True}})
        if self.path.split("?")[0].endswith("/eviction"):
            return self.send(201, {"kind":"Status","apiVersion":"v1","status":"Success","code":201})
        self.send(400, {"kind":"Status","apiVersion":"v1","status":"Failure","reason":"BadRequest","code":400,"message":"captured"})
    def do_DELETE(self):
        self.record("DELETE")
        self.send(200, POD)

HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
