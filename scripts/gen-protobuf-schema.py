#!/usr/bin/env python3
"""Generate crates/api/src/protobuf/schema.rs: the transcoding table of the protobuf decoder.

The table joins two upstream sources per message, both read from a git ref of the
kubernetes/api and kubernetes/apimachinery repositories:

* `generated.proto`: field numbers, proto types (scalar, message, repeated, map);
* the Go structs (`types.go` and friends): JSON name, `omitempty`, pointer or value, `,inline`.

Fields are matched by field number (the Go `protobuf:"<wire>,<number>,..."` struct tag). The
output lists the fields of every message in Go declaration order, because that is the order in
which Go's encoding/json writes them.

Usage:
    scripts/gen-protobuf-schema.py API_REPO APIMACHINERY_REPO [REF] > crates/api/src/protobuf/schema.rs

API_REPO / APIMACHINERY_REPO are git directories (bare is fine); REF defaults to release-1.33.
"""

import re
import subprocess
import sys

# Group/versions the decoder knows: every GA version served by a 1.33 apiserver.
API_PACKAGES = [
    "core/v1",
    "apps/v1",
    "batch/v1",
    "autoscaling/v1",
    "autoscaling/v2",
    "policy/v1",
    "rbac/v1",
    "networking/v1",
    "scheduling/v1",
    "coordination/v1",
    "storage/v1",
    "certificates/v1",
    "discovery/v1",
    "events/v1",
    "flowcontrol/v1",
    "node/v1",
    "admissionregistration/v1",
    "authentication/v1",
    "authorization/v1",
]
MACHINERY_PACKAGES = [
    "pkg/apis/meta/v1",
    "pkg/runtime",
    "pkg/util/intstr",
    "pkg/api/resource",
]

# Messages whose JSON form is not their proto structure (custom Go MarshalJSON).
SPECIAL = {
    "k8s.io.apimachinery.pkg.apis.meta.v1.Time": "Time",
    "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime": "MicroTime",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Duration": "Duration",
    "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1": "FieldsV1",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "Quantity",
    "k8s.io.apimachinery.pkg.api.resource.QuantityValue": "Quantity",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "RawExtension",
}

SCALARS = {
    "string": "Str",
    "bytes": "Bytes",
    "bool": "Bool",
    "int32": "I32",
    "int64": "I64",
}


def git_show(repo, ref, path):
    return subprocess.run(
        ["git", "--git-dir", repo, "show", f"{ref}:{path}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def git_ls(repo, ref, path):
    out = subprocess.run(
        ["git", "--git-dir", repo, "ls-tree", "--name-only", f"{ref}", path + "/"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line for line in out.splitlines() if line]


def strip_line_comment(line):
    """Drop a `//` comment, keeping `//` inside "strings" and `backquoted` struct tags."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"`":
            quote = ch
        elif line.startswith("//", i):
            return line[:i]
    return line


def strip_comments(text):
    """Drop comments; line comments first, since they may mention `/*` (as in "pods/*")."""
    text = "\n".join(strip_line_comment(line) for line in text.splitlines())
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def parse_proto(text):
    """Return (package, {message name: [(label, type, name, number)]})."""
    text = strip_comments(text)
    package = re.search(r"^package\s+([\w.]+);", text, re.M).group(1)
    messages = {}
    for m in re.finditer(r"^message\s+(\w+)\s*\{(.*?)^\}", text, re.M | re.S):
        fields = []
        for line in m.group(2).splitlines():
            line = line.strip()
            if not line or line.startswith("option ") or line.startswith("reserved "):
                continue
            fm = re.match(r"(optional|repeated|required)?\s*(map<\s*\w+\s*,\s*[\w.]+\s*>|[\w.]+)\s+(\w+)\s*=\s*(\d+)", line)
            if not fm:
                raise SystemExit(f"unparsed proto line in {m.group(1)}: {line!r}")
            fields.append((fm.group(1) or "optional", fm.group(2).replace(" ", ""), fm.group(3), int(fm.group(4))))
        messages[m.group(1)] = fields
    return package, messages


def parse_go(texts):
    """Return ({struct name: [go field]}, {named type: underlying}) for one Go package."""
    structs = {}
    named = {}
    for text in texts:
        text = strip_comments(text)
        for m in re.finditer(r"^type\s+(\w+)\s+(\S+)", text, re.M):
            if m.group(2) != "struct":
                named[m.group(1)] = m.group(2)
        for m in re.finditer(r"^type\s+(\w+)\s+struct\s*\{\n(.*?)^\}", text, re.M | re.S):
            fields = []
            for line in m.group(2).splitlines():
                stripped = line.strip()
                if not stripped or stripped.startswith("//"):
                    continue
                if "`" in stripped:
                    pre, tags = stripped.split("`", 2)[:2]
                else:
                    pre, tags = stripped.split("//", 1)[0], ""
                tokens = pre.split()
                if len(tokens) == 1:
                    go_name, go_type, embedded = tokens[0].split(".")[-1].lstrip("*"), tokens[0], True
                elif len(tokens) == 2:
                    go_name, go_type, embedded = tokens[0], tokens[1], False
                else:
                    # Not an API struct (function-typed fields and the like): unused.
                    fields = None
                    break
                jt = re.search(r'json:"([^"]*)"', tags)
                pt = re.search(r'protobuf:"([^"]*)"', tags)
                json_name, omitempty, inline = go_name, False, embedded
                if jt:
                    parts = jt.group(1).split(",")
                    if parts[0] == "-":
                        # Not in JSON; its proto field is then skipped when decoding.
                        json_name = None
                    elif parts[0]:
                        json_name, inline = parts[0], False
                    omitempty = "omitempty" in parts[1:]
                    inline = inline or "inline" in parts[1:]
                number = None
                if pt and pt.group(1) != "-":
                    number = int(pt.group(1).split(",")[1])
                fields.append(
                    {
                        "go_name": go_name,
                        "go_type": go_type,
                        "json": json_name,
                        "omitempty": omitempty,
                        "inline": inline,
                        "number": number,
                    }
                )
            if fields is not None:
                structs[m.group(1)] = fields
    return structs, named


def load_package(repo, ref, path, machinery):
    proto_pkg, messages = parse_proto(git_show(repo, ref, path + "/generated.proto"))
    skip = ("_test.go", "generated.pb.go", "_swagger_doc_generated.go")
    texts = [
        git_show(repo, ref, f)
        for f in git_ls(repo, ref, path)
        if f.endswith(".go") and not f.endswith(skip) and "/zz_generated" not in f
    ]
    structs, named = parse_go(texts)
    group = None
    if not machinery:
        reg = git_show(repo, ref, path + "/register.go")
        group = re.search(r'GroupName\s*=\s*"([^"]*)"', reg).group(1)
    return {
        "path": path,
        "proto_pkg": proto_pkg,
        "messages": messages,
        "structs": structs,
        "named": named,
        "group": group,
        "version": path.rsplit("/", 1)[1],
    }


def main():
    api_repo, machinery_repo = sys.argv[1], sys.argv[2]
    ref = sys.argv[3] if len(sys.argv) > 3 else "release-1.33"
    packages = [load_package(machinery_repo, ref, p, True) for p in MACHINERY_PACKAGES]
    packages += [load_package(api_repo, ref, p, False) for p in API_PACKAGES]

    # Every proto message, fully qualified, in a stable order.
    order = []
    by_name = {}
    for pkg in packages:
        for name in pkg["messages"]:
            full = f"{pkg['proto_pkg']}.{name}"
            by_name[full] = (pkg, name)
            order.append(full)
    index = {full: i for i, full in enumerate(order)}

    def resolve(pkg, proto_type):
        if proto_type in SCALARS:
            return SCALARS[proto_type]
        proto_type = proto_type.lstrip(".")
        if proto_type in ("uint32", "uint64", "double", "float", "sint32", "sint64", "fixed32", "fixed64"):
            raise SystemExit(f"scalar type {proto_type} in {pkg['path']} is not supported by the decoder")
        full = proto_type if "." in proto_type else f"{pkg['proto_pkg']}.{proto_type}"
        if full not in index:
            raise SystemExit(f"unknown message type {full} in {pkg['path']}")
        return f"Msg({index[full]})"

    out = []
    emit = out.append
    emit("//! The field table of every protobuf message the decoder knows (generated; see the script).")
    emit("")
    emit("// @generated by scripts/gen-protobuf-schema.py from the Kubernetes " + ref + " `generated.proto`")
    emit("// files and Go struct tags of kubernetes/api and kubernetes/apimachinery. Do not edit by hand.")
    emit("")
    emit("use super::table::{Card::*, Kind, Message, Special, Ty::*, f};")
    emit("")
    emit("/// Every known message; `Msg(n)` in a field refers to `MESSAGES[n]`.")
    emit(f"pub(super) static MESSAGES: [Message; {len(order)}] = [")
    warnings = []
    kinds = []
    for i, full in enumerate(order):
        pkg, name = by_name[full]
        proto_fields = {num: (label, typ, pname) for label, typ, pname, num in pkg["messages"][name]}
        special = SPECIAL.get(full)
        go_fields = pkg["structs"].get(name)
        alias = pkg["named"].get(name, "")
        if go_fields is None and alias.startswith("metav1."):
            # `type List metav1.List`: the JSON form is the meta struct's.
            go_fields = packages[0]["structs"].get(alias.split(".", 1)[1])
        if special is None and go_fields is None:
            underlying = pkg["named"].get(name, "")
            if underlying == "[]string":
                special = "StringList"
            else:
                warnings.append(f"no Go struct for {full} ({underlying!r}); proto names used")
        lines = []
        if special is None and go_fields is not None:
            has_type_meta = False
            seen = set()
            for gf in go_fields:
                if gf["go_type"] in ("metav1.TypeMeta", "TypeMeta") and gf["inline"] and gf["number"] is None:
                    has_type_meta = True
                    continue
                if gf["json"] is None:
                    if gf["number"] is not None:
                        seen.add(gf["number"])
                    continue
                if gf["number"] is None:
                    warnings.append(f"{full}.{gf['go_name']}: no protobuf tag, skipped")
                    continue
                if gf["number"] not in proto_fields:
                    raise SystemExit(f"{full}.{gf['go_name']}: field {gf['number']} not in proto")
                seen.add(gf["number"])
                label, typ, pname = proto_fields[gf["number"]]
                go_type = gf["go_type"]
                if typ.startswith("map<"):
                    key, value = typ[4:-1].split(",")
                    if key != "string":
                        raise SystemExit(f"{full}.{pname}: map key {key}")
                    ty, card = resolve(pkg, value), "Map"
                elif label == "repeated":
                    ty, card = resolve(pkg, typ), "Repeated"
                else:
                    ty = resolve(pkg, typ)
                    if gf["inline"]:
                        if go_type.startswith("*"):
                            raise SystemExit(f"{full}.{gf['go_name']}: inline pointer not supported")
                        card = "Inline"
                    elif go_type.startswith("*"):
                        card = "Pointer"
                    else:
                        card = "Value"
                json_name = "" if card == "Inline" else gf["json"]
                omit = "true" if gf["omitempty"] else "false"
                lines.append(f'        f({gf["number"]}, "{json_name}", {ty}, {card}, {omit}),')
            missing = set(proto_fields) - seen
            if missing:
                raise SystemExit(f"{full}: proto fields without Go field: {sorted(missing)}")
            if has_type_meta and pkg["group"] is not None:
                gv = pkg["version"] if pkg["group"] == "" else f"{pkg['group']}/{pkg['version']}"
                kinds.append((gv, name, i))
            elif pkg["path"] == "pkg/apis/meta/v1" and (has_type_meta or name == "WatchEvent"):
                # WatchEvent has no TypeMeta but is registered in every group/version too.
                kinds.append(("meta.k8s.io/v1", name, i))
        elif special is None:
            for label, typ, pname, num in pkg["messages"][name]:
                if typ.startswith("map<"):
                    ty, card = resolve(pkg, typ[4:-1].split(",")[1]), "Map"
                elif label == "repeated":
                    ty, card = resolve(pkg, typ), "Repeated"
                else:
                    ty, card = resolve(pkg, typ), "Pointer"
                lines.append(f'        f({num}, "{pname}", {ty}, {card}, true),')
        sp = special or "None"
        emit(f'    // {i}')
        if lines:
            emit(f'    Message {{ name: "{full}", special: Special::{sp}, fields: &[')
            out.extend(lines)
            emit("    ] },")
        else:
            emit(f'    Message {{ name: "{full}", special: Special::{sp}, fields: &[] }},')
    emit("];")
    emit("")
    kinds.sort()
    emit("/// Top-level kinds by (apiVersion, kind), sorted for binary search. meta.k8s.io/v1 kinds")
    emit("/// (DeleteOptions, Status...) are registered in every group/version, so they are looked up")
    emit("/// by kind alone when the apiVersion has no kind of that name.")
    emit(f"pub(super) static KINDS: [Kind; {len(kinds)}] = [")
    for gv, name, i in kinds:
        emit(f'    Kind {{ api_version: "{gv}", kind: "{name}", message: {i} }},')
    emit("];")
    sys.stdout.write("\n".join(out) + "\n")
    for w in warnings:
        print("warning: " + w, file=sys.stderr)


if __name__ == "__main__":
    main()
