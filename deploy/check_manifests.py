#!/usr/bin/python3
"""Render Rookery's kustomizations without kubectl or kustomize and check them.

    /usr/bin/python3 deploy/check_manifests.py              # every target below
    /usr/bin/python3 deploy/check_manifests.py DIR...       # these kustomizations
    /usr/bin/python3 deploy/check_manifests.py --self-test [--keep]  # broken manifests are rejected
    /usr/bin/python3 deploy/check_manifests.py --print DIR  # the render of DIR, as YAML
    /usr/bin/python3 deploy/check_manifests.py --compare-kubectl  # also diff each
        render against `kubectl kustomize` (needs kubectl; not used by CI)

Targets: deploy/k8s (the base) and every deploy/overlays/*/ with a
kustomization.yaml. Every component under deploy/components/ must be used by a
target, so that it is checked too. Exit status 0 when everything passes, 1 with
one line per problem otherwise, 2 on bad usage or a missing dependency.

1. Rendering: a small subset of kustomize, enough for these manifests and no
   more. A kustomization field outside the subset is an error, never ignored:
   resources (files and directories), components, patches (strategic merge,
   with kustomize's list merge keys for the fields below, or JSON 6902, by
   target or by kind and name), labels (includeSelectors/includeTemplates
   false only) and images. As kustomize does, it refuses files outside a
   kustomization's directory and a kustomization directory that contains one
   being built (so overlays cannot live under the base directory). Stricter than
   kustomize: a patch that matches nothing is an error.
2. Schema: every object is checked against the Kubernetes API types of Debian's
   python3-kubernetes (its kubernetes.client models: openapi_types,
   attribute_map, and the required fields their setters enforce): unknown
   fields, wrong types, missing required fields, plus the enum values, quantity
   syntax and names the API server validates for the fields used here. The
   package is 22.6 (Kubernetes 1.22): fields added later are reported unknown,
   and autoscaling/v2 (1.23) is checked against autoscaling/v2beta2, whose
   fields it took over.
3. References inside one render: Service, PodDisruptionBudget, StatefulSet and
   workload selectors select pod templates; probe ports and Service target
   ports are ports of the selected containers; the Secrets, ConfigMaps (and
   keys), claims and volumes that pods name exist; resourceFieldRef limits are
   set; $(VAR) in env values is defined before; the HPA's target exists and
   sets the requests it scales on.
   An object made outside the manifests on purpose goes in EXTERNAL below.
4. Rookery's own rules: a gateway on SQLite (no ROOKERY_STORE) is one pod
   (replicas 1, Recreate, HPA maxReplicas 1, not on an RWX volume); gateways on
   PostgreSQL that can be more than one share a ReadWriteMany data claim; a
   store DSN is postgresql:// or postgres://; ROOKERY_SEEDS names exactly the
   pods of the worker StatefulSet, on its cluster port.
"""
import base64
import copy
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:
    sys.exit("check_manifests: python3-yaml is missing (apt-get install python3-yaml)")

DEPLOY = os.path.dirname(os.path.abspath(__file__))

# Objects that pods may name without the render holding them, as
# (kind, name): documented in deploy/README.md as created by hand. None today.
EXTERNAL = set()


class Error(Exception):
    pass


# --------------------------------------------------------------------------
# 1. Rendering (the kustomize subset)

KFILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
K_FIELDS = {"apiVersion", "kind", "resources", "components", "patches", "labels", "images"}
# Strategic-merge list merge keys (Kubernetes' patchMergeKey) for the lists a
# patch may merge; every other list is replaced whole, as kustomize does for
# lists without a merge key (args, command, envFrom, accessModes, ...).
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "env": "name", "volumes": "name", "volumeMounts": "mountPath",
    "volumeDevices": "devicePath", "imagePullSecrets": "name",
    "topologySpreadConstraints": "topologyKey", "hostAliases": "ip",
}


def kfile(d):
    for n in KFILES:
        p = os.path.join(d, n)
        if os.path.isfile(p):
            return p
    return None


def load_docs(path, text=None):
    if text is None:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise Error(f"{path}: {e.strerror}")
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise Error(f"{path}: not valid YAML: {e}".replace("\n", " "))


def group_of(api_version):
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def obj_id(o):
    md = o.get("metadata") or {}
    return (group_of(str(o.get("apiVersion", ""))), o.get("kind"), md.get("namespace") or "", md.get("name"))


def show(o):
    return f"{o.get('kind')}/{(o.get('metadata') or {}).get('name')}"


def inside(root, path):
    root, path = os.path.realpath(root), os.path.realpath(path)
    return path == root or path.startswith(root + os.sep)


class Renderer:
    def __init__(self):
        self.roots = []           # kustomization directories being built
        self.used_components = set()

    def build(self, d, acc=None):
        """Renders the kustomization in d; with acc, d is a Component applied to acc."""
        d = os.path.realpath(d)
        kf = kfile(d)
        if kf is None:
            raise Error(f"{d}: no kustomization.yaml")
        for r in self.roots:
            if inside(d, r):
                raise Error(f"{kf}: cycle: {d} contains {r}, which is being built (kustomize refuses "
                            "this too: keep overlays outside their base's directory)")
        docs = load_docs(kf)
        if len(docs) != 1 or not isinstance(docs[0], dict):
            raise Error(f"{kf}: expected one mapping")
        k = docs[0]
        component = acc is not None
        kind = k.get("kind", "Kustomization")
        want = ("Component", "kustomize.config.k8s.io/v1alpha1") if component else \
               ("Kustomization", "kustomize.config.k8s.io/v1beta1")
        if kind != want[0] or k.get("apiVersion", want[1]) != want[1]:
            raise Error(f"{kf}: expected kind {want[0]} (apiVersion {want[1]}), got "
                        f"{kind} ({k.get('apiVersion')})" + (" (listed under components:)" if component else ""))
        extra = sorted(set(k) - K_FIELDS)
        if extra:
            raise Error(f"{kf}: {', '.join(extra)}: not implemented by deploy/check_manifests.py "
                        "(keep the manifests within its subset, or implement it there)")
        if component:
            self.used_components.add(d)
        self.roots.append(d)
        try:
            res = acc if component else []
            for r in seq(k, "resources", kf):
                for o in self.load_resource(d, r, kf):
                    add(res, o, kf)
            for c in seq(k, "components", kf):
                p = os.path.join(d, str(c))
                if not os.path.isdir(p):
                    raise Error(f"{kf}: component {c}: not a directory")
                res = self.build(p, res)
            for i, p in enumerate(seq(k, "patches", kf)):
                apply_patch(res, p, d, f"{kf}: patches[{i}]")
            for i, l in enumerate(seq(k, "labels", kf)):
                apply_labels(res, l, f"{kf}: labels[{i}]")
            for i, im in enumerate(seq(k, "images", kf)):
                apply_image(res, im, f"{kf}: images[{i}]")
        finally:
            self.roots.pop()
        return res

    def load_resource(self, d, r, kf):
        if not isinstance(r, str) or "://" in r or r.startswith("github.com/"):
            raise Error(f"{kf}: resource {r!r}: only local files and directories are supported")
        p = os.path.join(d, r)
        if os.path.isdir(p):
            return self.build(p)
        if not inside(d, p):
            raise Error(f"{kf}: resource {r}: a file outside the kustomization's directory "
                        "(kustomize refuses it; make that directory a kustomization and list it)")
        out = []
        for i, o in enumerate(load_docs(p)):
            if not isinstance(o, dict) or not o.get("apiVersion") or not o.get("kind") \
                    or not isinstance(o.get("metadata"), dict) or not o["metadata"].get("name"):
                raise Error(f"{p}: document {i + 1}: needs apiVersion, kind and metadata.name")
            if o["kind"].endswith("List"):
                raise Error(f"{p}: {o['kind']}: lists are not supported, write the items as documents")
            out.append(o)
        return out


def seq(k, field, kf):
    v = k.get(field) or []
    if not isinstance(v, list):
        raise Error(f"{kf}: {field}: expected a list")
    return v


def add(res, o, where):
    for r in res:
        if obj_id(r) == obj_id(o):
            raise Error(f"{where}: {show(o)} is defined twice")
    res.append(o)


def select(res, target, where):
    if not isinstance(target, dict):
        raise Error(f"{where}: target: expected a mapping")
    extra = set(target) - {"group", "version", "kind", "name", "namespace", "labelSelector"}
    if extra:
        raise Error(f"{where}: target: {', '.join(sorted(extra))}: not implemented")
    out = []
    for o in res:
        av = str(o.get("apiVersion", ""))
        md = o.get("metadata") or {}
        if "group" in target and group_of(av) != target["group"]:
            continue
        if "version" in target and av.rsplit("/", 1)[-1] != target["version"]:
            continue
        if "kind" in target and o.get("kind") != target["kind"]:
            continue
        if "name" in target and not re.fullmatch(str(target["name"]), str(md.get("name"))):
            continue
        if "namespace" in target and (md.get("namespace") or "") != target["namespace"]:
            continue
        if "labelSelector" in target:
            want = {}
            for term in str(target["labelSelector"]).split(","):
                if not re.fullmatch(r"\s*[^=!\s]+\s*=\s*[^=!\s]*\s*", term):
                    raise Error(f"{where}: labelSelector: only k=v terms are implemented")
                a, b = term.split("=")
                want[a.strip()] = b.strip()
            labels = md.get("labels") or {}
            if any(labels.get(a) != b for a, b in want.items()):
                continue
        out.append(o)
    return out


def apply_patch(res, p, d, where):
    if not isinstance(p, dict):
        raise Error(f"{where}: expected a mapping")
    extra = set(p) - {"path", "patch", "target"}
    if extra:
        raise Error(f"{where}: {', '.join(sorted(extra))}: not implemented")
    if ("path" in p) == ("patch" in p):
        raise Error(f"{where}: needs exactly one of path and patch")
    if "path" in p:
        path = os.path.join(d, str(p["path"]))
        if not inside(d, path):
            raise Error(f"{where}: {p['path']}: a file outside the kustomization's directory")
        docs = load_docs(path)
        where = f"{where} ({p['path']})"
    else:
        docs = load_docs(where, str(p["patch"]))
    if not docs:
        raise Error(f"{where}: empty patch")
    if len(docs) == 1 and isinstance(docs[0], list):
        if "target" not in p:
            raise Error(f"{where}: a JSON 6902 patch needs a target")
        targets = select(res, p["target"], where)
        if not targets:
            raise Error(f"{where}: target {p['target']} matches no resource")
        for t in targets:
            new = json6902(t, docs[0], f"{where} on {show(t)}")
            t.clear()
            t.update(new)
        return
    for doc in docs:
        if not isinstance(doc, dict):
            raise Error(f"{where}: a strategic-merge patch is a mapping (a list is JSON 6902)")
        if "target" in p:
            targets = select(res, p["target"], where)
        else:
            name = (doc.get("metadata") or {}).get("name")
            if not doc.get("kind") or not name:
                raise Error(f"{where}: a patch without target needs kind and metadata.name")
            targets = [o for o in res if o.get("kind") == doc["kind"]
                       and (o.get("metadata") or {}).get("name") == name
                       and ("apiVersion" not in doc or group_of(str(o.get("apiVersion"))) == group_of(str(doc["apiVersion"])))]
        if not targets:
            raise Error(f"{where}: {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')} "
                        f"{'target ' + str(p['target']) + ' ' if 'target' in p else ''}matches no resource")
        for t in targets:
            patch = copy.deepcopy(doc)
            if "target" in p:     # the target names the object; the patch cannot rename it
                patch.setdefault("metadata", {})["name"] = t["metadata"]["name"]
                patch["kind"], patch["apiVersion"] = t["kind"], t["apiVersion"]
            new = smp(t, patch, f"{where} on {show(t)}")
            t.clear()
            t.update(new)


def smp(base, patch, where):
    """Strategic merge of patch into base (a copy is returned)."""
    if isinstance(patch, dict):
        d = patch.get("$patch")
        if d == "replace":
            return clean({k: v for k, v in patch.items() if k != "$patch"}, where)
        if d is not None:
            raise Error(f"{where}: $patch: {d} is not implemented here (only in list items: delete)")
        if not isinstance(base, dict):
            return clean(patch, where)
        out = copy.deepcopy(base)
        for k, v in patch.items():
            if k.startswith("$"):
                raise Error(f"{where}: directive {k} is not implemented")
            if v is None:
                out.pop(k, None)
            elif k in out and isinstance(v, dict) and isinstance(out[k], dict):
                out[k] = smp(out[k], v, where)
            elif k in out and isinstance(v, list) and isinstance(out[k], list) and list_key(k, v, out[k]):
                out[k] = merge_list(out[k], v, list_key(k, v, out[k]), f"{where}: {k}")
            else:
                out[k] = clean(v, where)
        return out
    return clean(patch, where)


def list_key(field, patch, base):
    if field == "ports":        # container ports merge on containerPort, Service ports on port
        items = [x for x in patch + base if isinstance(x, dict)]
        return "containerPort" if any("containerPort" in x for x in items) else "port"
    return MERGE_KEYS.get(field)


def merge_list(base, patch, key, where):
    # kustomize's order: the patch's items in the patch's order (merged with the
    # base item of the same key), then the base items the patch does not name.
    rest = copy.deepcopy(base)
    out = []
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise Error(f"{where}: every item needs the merge key {key!r}")
        i = next((j for j, b in enumerate(rest) if isinstance(b, dict) and b.get(key) == item[key]), None)
        d = item.get("$patch")
        if d == "delete":
            if i is not None:
                del rest[i]
            continue
        if d is not None:
            raise Error(f"{where}: $patch: {d} in a list item is not implemented")
        out.append(smp(rest.pop(i), item, where) if i is not None else clean(item, where))
    return out + rest


def clean(v, where):
    """A patch value added as is: no directives may remain, null keys vanish."""
    if isinstance(v, dict):
        if any(k.startswith("$") for k in v):
            raise Error(f"{where}: directive in a new value: {sorted(k for k in v if k.startswith('$'))}")
        return {k: clean(x, where) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [clean(x, where) for x in v]
    return copy.deepcopy(v)


def pointer(path, where):
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise Error(f"{where}: bad JSON pointer {path!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")] if path else []


def walk_to(doc, toks, where, path):
    cur = doc
    for t in toks:
        if isinstance(cur, dict) and t in cur:
            cur = cur[t]
        elif isinstance(cur, list) and t.isdigit() and int(t) < len(cur):
            cur = cur[int(t)]
        else:
            raise Error(f"{where}: path {path} does not exist")
    return cur


def json6902(doc, ops, where):
    doc = copy.deepcopy(doc)
    if not isinstance(ops, list):
        raise Error(f"{where}: a JSON 6902 patch is a list of operations")
    for n, op in enumerate(ops):
        w = f"{where}: operation {n}"
        if not isinstance(op, dict) or op.get("op") not in ("add", "remove", "replace", "test", "move", "copy"):
            raise Error(f"{w}: expected op add, remove, replace, test, move or copy")
        o, path = op["op"], op.get("path")
        toks = pointer(path, w)
        if o in ("add", "replace", "test") and "value" not in op:
            raise Error(f"{w}: {o} needs a value")
        if o in ("move", "copy"):
            src = walk_to(doc, pointer(op.get("from"), w), w, op.get("from"))
            value = copy.deepcopy(src)
            if o == "move":
                json6902_remove(doc, pointer(op["from"], w), w, op["from"])
            json6902_add(doc, toks, value, w, path)
        elif o == "add":
            json6902_add(doc, toks, copy.deepcopy(op["value"]), w, path)
        elif o == "remove":
            json6902_remove(doc, toks, w, path)
        elif o == "replace":
            if not toks:
                raise Error(f"{w}: replacing the whole object is not supported")
            parent = walk_to(doc, toks[:-1], w, path)
            walk_to(parent, toks[-1:], w, path)       # must exist
            parent[int(toks[-1]) if isinstance(parent, list) else toks[-1]] = copy.deepcopy(op["value"])
        elif walk_to(doc, toks, w, path) != op["value"]:
            raise Error(f"{w}: test failed at {path}")
    return doc


def json6902_add(doc, toks, value, w, path):
    if not toks:
        raise Error(f"{w}: adding the whole object is not supported")
    parent = walk_to(doc, toks[:-1], w, path)
    last = toks[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list) and last == "-":
        parent.append(value)
    elif isinstance(parent, list) and last.isdigit() and int(last) <= len(parent):
        parent.insert(int(last), value)
    else:
        raise Error(f"{w}: path {path} does not exist")


def json6902_remove(doc, toks, w, path):
    if not toks:
        raise Error(f"{w}: removing the whole object is not supported")
    parent = walk_to(doc, toks[:-1], w, path)
    walk_to(parent, toks[-1:], w, path)
    del parent[int(toks[-1]) if isinstance(parent, list) else toks[-1]]


def apply_labels(res, l, where):
    if not isinstance(l, dict) or not isinstance(l.get("pairs"), dict):
        raise Error(f"{where}: expected pairs")
    extra = set(l) - {"pairs", "includeSelectors", "includeTemplates"}
    if extra or l.get("includeSelectors") or l.get("includeTemplates"):
        raise Error(f"{where}: only pairs with includeSelectors/includeTemplates false are implemented")
    for o in res:
        o.setdefault("metadata", {})
        if o["metadata"].get("labels") is None:
            o["metadata"]["labels"] = {}
        o["metadata"]["labels"].update(l["pairs"])


def split_image(image):
    name, digest, tag = image, None, None
    if "@" in name:
        name, digest = name.split("@", 1)
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    return name, tag, digest


def apply_image(res, im, where):
    if not isinstance(im, dict) or not im.get("name"):
        raise Error(f"{where}: needs a name")
    extra = set(im) - {"name", "newName", "newTag", "digest"}
    if extra:
        raise Error(f"{where}: {', '.join(sorted(extra))}: not implemented")

    def visit(v):
        if isinstance(v, dict):
            for k, x in v.items():
                if k in ("containers", "initContainers") and isinstance(x, list):
                    for c in x:
                        if isinstance(c, dict) and isinstance(c.get("image"), str):
                            name, tag, digest = split_image(c["image"])
                            if name == im["name"]:
                                new = str(im.get("newName") or name)
                                if im.get("digest"):
                                    new += "@" + str(im["digest"])
                                elif im.get("newTag") is not None:
                                    new += ":" + str(im["newTag"])
                                elif digest:
                                    new += "@" + digest
                                elif tag:
                                    new += ":" + tag
                                c["image"] = new
                visit(x)
        elif isinstance(v, list):
            for x in v:
                visit(x)
    for o in res:
        visit(o)


# --------------------------------------------------------------------------
# 2. Schema (python3-kubernetes' models)

kc = None


def load_kubernetes():
    global kc
    if kc is None:
        try:
            import kubernetes.client as client
        except ImportError:
            print("check_manifests: python3-kubernetes is missing: apt-get install python3-kubernetes "
                  f"(run with Debian's /usr/bin/python3; this is {sys.executable})", file=sys.stderr)
            sys.exit(2)
        kc = client
    return kc


# python3-kubernetes 22 predates autoscaling/v2 (Kubernetes 1.23), which took
# over autoscaling/v2beta2's fields.
API_ALIASES = {("autoscaling", "v2"): ("autoscaling", "v2beta2")}
INT_OR_STRING = {"port", "target_port", "max_surge", "max_unavailable", "min_available"}
QUANTITY = {("V1ResourceRequirements", "limits"), ("V1ResourceRequirements", "requests"),
            ("V1ResourceFieldSelector", "divisor"), ("V1EmptyDirVolumeSource", "size_limit")}
QUANTITY_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?")
PROTOCOLS = {"TCP", "UDP", "SCTP"}
ENUMS = {
    ("V1Container", "image_pull_policy"): {"Always", "IfNotPresent", "Never"},
    ("V1Container", "termination_message_policy"): {"File", "FallbackToLogsOnError"},
    ("V1ContainerPort", "protocol"): PROTOCOLS,
    ("V1ServicePort", "protocol"): PROTOCOLS,
    ("V1ServiceSpec", "type"): {"ClusterIP", "NodePort", "LoadBalancer", "ExternalName"},
    ("V1ServiceSpec", "session_affinity"): {"None", "ClientIP"},
    ("V1ServiceSpec", "external_traffic_policy"): {"Cluster", "Local"},
    ("V1DeploymentStrategy", "type"): {"Recreate", "RollingUpdate"},
    ("V1StatefulSetSpec", "pod_management_policy"): {"OrderedReady", "Parallel"},
    ("V1StatefulSetUpdateStrategy", "type"): {"RollingUpdate", "OnDelete"},
    ("V1PodSpec", "restart_policy"): {"Always", "OnFailure", "Never"},
    ("V1PodSpec", "dns_policy"): {"ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"},
    ("V1TopologySpreadConstraint", "when_unsatisfiable"): {"DoNotSchedule", "ScheduleAnyway"},
    ("V1SeccompProfile", "type"): {"RuntimeDefault", "Unconfined", "Localhost"},
    ("V1PersistentVolumeClaimSpec", "access_modes"): {"ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"},
    ("V1PersistentVolumeClaimSpec", "volume_mode"): {"Filesystem", "Block"},
    ("V1HTTPGetAction", "scheme"): {"HTTP", "HTTPS"},
    ("V1LabelSelectorRequirement", "operator"): {"In", "NotIn", "Exists", "DoesNotExist"},
    ("V1PodSecurityContext", "fs_group_change_policy"): {"OnRootMismatch", "Always"},
    ("V2beta2MetricSpec", "type"): {"Object", "Pods", "Resource", "ContainerResource", "External"},
    ("V2beta2MetricTarget", "type"): {"Utilization", "Value", "AverageValue"},
}
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
IANA_SVC = re.compile(r"(?=.*[a-z])[a-z0-9]([a-z0-9]|-(?=[a-z0-9]))*")
ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
KEY_NAME = re.compile(r"[-._a-zA-Z0-9]+")
_required = {}


def required(cls):
    """Required fields: the ones the model's setters refuse to be None."""
    if cls not in _required:
        src = inspect.getsource(cls)
        _required[cls] = set(re.findall(r"Invalid value for `(\w+)`, must not be `None`", src))
    return _required[cls]


def model_for(o):
    """(model class, namespaced) for an object's apiVersion and kind, from the
    client's API classes: the body type of create_[namespaced_]<kind>."""
    av, kind = str(o.get("apiVersion")), str(o.get("kind"))
    group, _, version = av.rpartition("/")
    g, v = API_ALIASES.get((group, version), (group, version))
    mod = g.replace(".k8s.io", "").replace(".", "_") if g else "core"
    api = getattr(kc, "".join(p.capitalize() for p in mod.split("_")) + v.capitalize() + "Api", None)
    if api is None:
        raise Error(f"{show(o)}: unknown apiVersion {av!r}")
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", kind)).lower()
    for m, namespaced in ((f"create_namespaced_{snake}", True), (f"create_{snake}", False)):
        f = getattr(api, m, None)
        if f:
            t = re.search(r":param (\w+) body:", inspect.getdoc(f) or "")
            if t and hasattr(kc, t.group(1)):
                return getattr(kc, t.group(1)), namespaced
    raise Error(f"{show(o)}: kind {kind!r} is not in apiVersion {av!r}")


def type_name(v):
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(v), type(v).__name__)


def check_schema(o, errs):
    try:
        cls, _ = model_for(o)
    except Error as e:
        errs.append(str(e))
        return
    walk(o, cls.__name__, show(o), errs, None, None)
    md = o.get("metadata") or {}
    name = str(md.get("name"))
    if o.get("kind") == "Service":
        if not (DNS_1035.fullmatch(name) and len(name) <= 63):
            errs.append(f"{show(o)}: a Service name must be a DNS-1035 label (a-z0-9-, a letter first, <= 63)")
    elif not (DNS_SUBDOMAIN.fullmatch(name) and len(name) <= 253):
        errs.append(f"{show(o)}: metadata.name must be a DNS-1123 subdomain")


def walk(v, typ, path, errs, owner, attr):
    if v is None:
        return
    if typ.startswith("list["):
        if not isinstance(v, list):
            errs.append(f"{path}: expected a list, got {type_name(v)} {v!r}")
            return
        for i, x in enumerate(v):
            walk(x, typ[5:-1], f"{path}[{i}]", errs, owner, attr)
        return
    if typ.startswith("dict("):
        if not isinstance(v, dict):
            errs.append(f"{path}: expected a mapping, got {type_name(v)} {v!r}")
            return
        inner = typ[typ.index(",") + 1:-1].strip()
        for k, x in v.items():
            if not isinstance(k, str):
                errs.append(f"{path}: key {k!r} is not a string")
            walk(x, inner, f"{path}.{k}", errs, owner, attr)
        if attr == "labels" or (owner, attr) in (("V1LabelSelector", "match_labels"), ("V1ServiceSpec", "selector")):
            check_labels(v, path, errs)
        return
    if typ == "str":
        if (owner, attr) in QUANTITY:
            if isinstance(v, bool) or not isinstance(v, (str, int, float)) or not QUANTITY_RE.fullmatch(str(v)):
                errs.append(f"{path}: {v!r} is not a Kubernetes quantity (e.g. 500m, 2, 1Gi)")
        elif not isinstance(v, str):
            errs.append(f"{path}: expected a string, got {type_name(v)} {v!r} (quote it)")
        elif (owner, attr) in ENUMS and v not in ENUMS[(owner, attr)]:
            errs.append(f"{path}: {v!r} is not one of {', '.join(sorted(ENUMS[(owner, attr)]))}")
        else:
            check_format(v, path, owner, attr, errs)
    elif typ == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            errs.append(f"{path}: expected an integer, got {type_name(v)} {v!r}")
    elif typ == "bool":
        if not isinstance(v, bool):
            errs.append(f"{path}: expected a boolean, got {type_name(v)} {v!r}")
    elif typ == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            errs.append(f"{path}: expected a number, got {type_name(v)} {v!r}")
    elif typ == "datetime":
        if not isinstance(v, str):
            errs.append(f"{path}: expected a timestamp string, got {type_name(v)}")
    elif typ == "object":
        if attr in INT_OR_STRING:
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                errs.append(f"{path}: expected an integer or a string, got {type_name(v)} {v!r}")
            elif attr != "port" and attr != "target_port" and isinstance(v, str) and not re.fullmatch(r"\d+%", v):
                errs.append(f"{path}: {v!r}: expected an integer or a percentage")
            elif isinstance(v, str) and attr in ("port", "target_port") and not (IANA_SVC.fullmatch(v) and len(v) <= 15):
                errs.append(f"{path}: {v!r} is not a port name (IANA_SVC_NAME)")
    else:
        cls = getattr(kc, typ, None)
        if cls is None:
            errs.append(f"{path}: internal: no model {typ}")
            return
        if not isinstance(v, dict):
            errs.append(f"{path}: expected a mapping ({typ}), got {type_name(v)} {v!r}")
            return
        by_json = {j: a for a, j in cls.attribute_map.items()}
        for k, x in v.items():
            if k not in by_json:
                errs.append(f"{path}.{k}: unknown field (not in {typ}, Kubernetes 1.22's schema)")
                continue
            walk(x, cls.openapi_types[by_json[k]], f"{path}.{k}", errs, typ, by_json[k])
        for a in sorted(required(cls)):
            if v.get(cls.attribute_map[a]) is None:
                errs.append(f"{path}: missing required field {cls.attribute_map[a]!r} ({typ})")


def check_format(v, path, owner, attr, errs):
    if attr == "name" and owner in ("V1Container", "V1Volume", "V1EphemeralContainer") \
            and not (DNS_LABEL.fullmatch(v) and len(v) <= 63):
        errs.append(f"{path}: {v!r} is not a DNS-1123 label")
    elif (owner, attr) == ("V1ContainerPort", "name") and not (IANA_SVC.fullmatch(v) and len(v) <= 15):
        errs.append(f"{path}: {v!r} is not a port name (lowercase, a letter, <= 15 characters)")
    elif (owner, attr) == ("V1ServicePort", "name") and not (DNS_LABEL.fullmatch(v) and len(v) <= 63):
        errs.append(f"{path}: {v!r} is not a DNS-1123 label")
    elif (owner, attr) == ("V1EnvVar", "name") and not ENV_NAME.fullmatch(v):
        errs.append(f"{path}: {v!r} is not a valid environment variable name")


def check_labels(labels, path, errs):
    for k, v in labels.items():
        k = str(k)
        prefix, _, name = k.rpartition("/")
        if (prefix and not (DNS_SUBDOMAIN.fullmatch(prefix) and len(prefix) <= 253)) \
                or not (LABEL_NAME.fullmatch(name) and len(name) <= 63):
            errs.append(f"{path}: {k!r} is not a valid label key")
        if isinstance(v, str) and v and not (LABEL_NAME.fullmatch(v) and len(v) <= 63):
            errs.append(f"{path}.{k}: {v!r} is not a valid label value")


# --------------------------------------------------------------------------
# 3. References inside a render

def d(v):
    return v if isinstance(v, dict) else {}


def lst(v):
    return v if isinstance(v, list) else []


def pod_templates(objs):
    """(object, pod spec, pod labels, path, volumeClaimTemplate names)"""
    for o in objs:
        k, spec = o.get("kind"), d(o.get("spec"))
        if k == "Pod":
            yield o, spec, d(d(o.get("metadata")).get("labels")), show(o), set()
        elif k in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"):
            t = d(d(d(spec.get("jobTemplate")).get("spec")).get("template")) if k == "CronJob" else d(spec.get("template"))
            vct = {d(x.get("metadata")).get("name") for x in lst(spec.get("volumeClaimTemplates")) if isinstance(x, dict)}
            yield o, d(t.get("spec")), d(d(t.get("metadata")).get("labels")), f"{show(o)}.spec.template.spec", vct


def selects(sel, labels, plain=False):
    """A Service's plain map (plain) or a LabelSelector against pod labels."""
    if plain:
        return bool(sel) and all(labels.get(k) == v for k, v in sel.items())
    ml, me = d(sel.get("matchLabels")), lst(sel.get("matchExpressions"))
    if not ml and not me:
        return True
    if any(labels.get(k) != v for k, v in ml.items()):
        return False
    for e in me:
        e = d(e)
        key, op, vals = e.get("key"), e.get("operator"), lst(e.get("values"))
        if (op == "In" and labels.get(key) not in vals) or (op == "NotIn" and labels.get(key) in vals) \
                or (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def containers(ps):
    return [c for c in lst(ps.get("initContainers")) + lst(ps.get("containers")) if isinstance(c, dict)]


def port_names(ps):
    return {p.get("name"): p.get("containerPort") for c in containers(ps) for p in lst(c.get("ports"))
            if isinstance(p, dict) and p.get("name")}


def check_references(objs, errs):
    index = {}
    for o in objs:
        index[(o.get("kind"), d(o.get("metadata")).get("name"))] = o
    templates = list(pod_templates(objs))

    def ref(kind, name, where, key=None, optional=False):
        o = index.get((kind, name))
        if o is None:
            if (kind, name) not in EXTERNAL and not optional:
                errs.append(f"{where}: refers to {kind} {name!r}, which is not in this render "
                            "(add it, or list it in EXTERNAL in deploy/check_manifests.py and document it)")
            return
        if key is not None:
            keys = set(d(o.get("data"))) | set(d(o.get("stringData"))) | set(d(o.get("binaryData")))
            if key not in keys and not optional:
                errs.append(f"{where}: key {key!r} is not in {kind} {name} (it has {', '.join(sorted(keys)) or 'none'})")

    for o, ps, labels, where, vct in templates:
        cs = containers(ps)
        names = [c.get("name") for c in cs]
        for n in {n for n in names if names.count(n) > 1}:
            errs.append(f"{where}: two containers named {n!r}")
        vols = [d(v) for v in lst(ps.get("volumes"))]
        vnames = [v.get("name") for v in vols]
        for n in {n for n in vnames if vnames.count(n) > 1}:
            errs.append(f"{where}: two volumes named {n!r}")
        for n in vct & set(vnames):
            errs.append(f"{where}: volume {n!r} is also a volumeClaimTemplate")
        for v in vols:
            w = f"{where}.volumes[{v.get('name')}]"
            if "configMap" in v:
                cm = d(v["configMap"])
                ref("ConfigMap", cm.get("name"), w, optional=bool(cm.get("optional")))
                for it in lst(cm.get("items")):
                    ref("ConfigMap", cm.get("name"), w, key=d(it).get("key"), optional=bool(cm.get("optional")))
            if "secret" in v:
                s = d(v["secret"])
                ref("Secret", s.get("secretName"), w, optional=bool(s.get("optional")))
                for it in lst(s.get("items")):
                    ref("Secret", s.get("secretName"), w, key=d(it).get("key"), optional=bool(s.get("optional")))
            if "persistentVolumeClaim" in v:
                ref("PersistentVolumeClaim", d(v["persistentVolumeClaim"]).get("claimName"), w)
        for s in lst(ps.get("imagePullSecrets")):
            ref("Secret", d(s).get("name"), f"{where}.imagePullSecrets")
        sa = ps.get("serviceAccountName")
        if sa and sa != "default":
            ref("ServiceAccount", sa, f"{where}.serviceAccountName")
        for c in cs:
            cw = f"{where}.containers[{c.get('name')}]"
            mounts = [d(m) for m in lst(c.get("volumeMounts"))]
            for m in mounts:
                if m.get("name") not in set(vnames) | vct:
                    errs.append(f"{cw}: mounts volume {m.get('name')!r}, which is not in volumes"
                                f"{' or volumeClaimTemplates' if vct else ''}")
            paths = [m.get("mountPath") for m in mounts]
            for p in {p for p in paths if paths.count(p) > 1}:
                errs.append(f"{cw}: two volumes mounted at {p}")
            ports = [d(p) for p in lst(c.get("ports"))]
            pn = [p.get("name") for p in ports if p.get("name")]
            for n in {n for n in pn if pn.count(n) > 1}:
                errs.append(f"{cw}: two ports named {n!r}")
            pnum = [(p.get("containerPort"), p.get("protocol", "TCP")) for p in ports]
            for n in {n for n in pnum if pnum.count(n) > 1}:
                errs.append(f"{cw}: port {n[0]}/{n[1]} declared twice")
            defined = []
            for e in [d(e) for e in lst(c.get("env"))]:
                n, ew = e.get("name"), f"{cw}.env[{e.get('name')}]"
                if n in defined:
                    errs.append(f"{ew}: defined twice")
                if isinstance(e.get("value"), str):
                    for var in re.findall(r"(?<!\$)\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)", e["value"]):
                        if var not in defined:
                            errs.append(f"{ew}: $({var}) is not an env variable defined before it "
                                        "(Kubernetes would pass it literally)")
                defined.append(n)
                vf = d(e.get("valueFrom"))
                for kind, field in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                    if field in vf:
                        r = d(vf[field])
                        ref(kind, r.get("name"), ew, key=r.get("key"), optional=bool(r.get("optional")))
                if "resourceFieldRef" in vf:
                    r = d(vf["resourceFieldRef"])
                    target = next((x for x in cs if x.get("name") == (r.get("containerName") or c.get("name"))), None)
                    res = str(r.get("resource", ""))
                    if target is None:
                        errs.append(f"{ew}: resourceFieldRef names container {r.get('containerName')!r}, not in this pod")
                    elif "." in res:
                        kind, name = res.split(".", 1)
                        if name not in d(d(target.get("resources")).get(kind)):
                            errs.append(f"{ew}: resourceFieldRef {res}: container {target.get('name')!r} sets no "
                                        f"{res} (Kubernetes would give the node's allocatable instead)")
            for ef in [d(e) for e in lst(c.get("envFrom"))]:
                for kind, field in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
                    if field in ef:
                        r = d(ef[field])
                        ref(kind, r.get("name"), f"{cw}.envFrom", optional=bool(r.get("optional")))
            names_here = {p.get("name") for p in ports}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe not in c:
                    continue
                p, pw = d(c[probe]), f"{cw}.{probe}"
                handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if h in p]
                if len(handlers) != 1:
                    errs.append(f"{pw}: needs exactly one of exec, httpGet, tcpSocket (has {handlers or 'none'})")
                for h in ("httpGet", "tcpSocket"):
                    port = d(p.get(h)).get("port")
                    if isinstance(port, str) and port not in names_here:
                        errs.append(f"{pw}: port {port!r} is not a port of the container "
                                    f"(it has {', '.join(sorted(n for n in names_here if n)) or 'none'})")
                if "exec" in p and not lst(d(p["exec"]).get("command")):
                    errs.append(f"{pw}: exec needs a command")
        if o.get("kind") != "Pod" and o.get("kind") != "CronJob":
            sel = d(d(o.get("spec")).get("selector"))
            if not sel:
                errs.append(f"{show(o)}: spec.selector is missing")
            elif not selects(sel, labels):
                errs.append(f"{show(o)}: spec.selector does not match spec.template.metadata.labels "
                            "(the API server rejects it)")

    def selected(sel, plain=False):
        return [(o, ps) for o, ps, labels, _, _ in templates if selects(sel, labels, plain)]

    for o in objs:
        k, spec, w = o.get("kind"), d(o.get("spec")), show(o)
        if k == "Service" and spec.get("type") != "ExternalName":
            sel = d(spec.get("selector"))
            pods = selected(sel, plain=True)
            if not sel:
                errs.append(f"{w}: no selector (a Service for external endpoints: list it in EXTERNAL)")
            elif not pods:
                errs.append(f"{w}: selector {sel} selects no pod template in this render")
            for p in [d(p) for p in lst(spec.get("ports"))]:
                tp = p.get("targetPort", p.get("port"))
                for po, ps in pods:
                    if isinstance(tp, str) and tp not in port_names(ps):
                        errs.append(f"{w}: targetPort {tp!r} is not a named port of {show(po)}")
                    if isinstance(tp, int) and tp not in {d(x).get("containerPort") for c in containers(ps) for x in lst(c.get("ports"))}:
                        errs.append(f"{w}: targetPort {tp} is not a declared containerPort of {show(po)}")
        elif k == "StatefulSet":
            svc = index.get(("Service", spec.get("serviceName")))
            tl = d(d(d(spec.get("template")).get("metadata")).get("labels"))
            if svc is None:
                errs.append(f"{w}: serviceName {spec.get('serviceName')!r} is not a Service in this render")
            else:
                if d(svc.get("spec")).get("clusterIP") != "None":
                    errs.append(f"{w}: its Service {show(svc)} is not headless (clusterIP: None)")
                if not selects(d(d(svc.get("spec")).get("selector")), tl, plain=True):
                    errs.append(f"{w}: its Service {show(svc)} does not select its pods")
        elif k == "PodDisruptionBudget":
            if not selected(d(spec.get("selector"))) or not d(spec.get("selector")):
                errs.append(f"{w}: selector selects no pod template in this render")
        elif k == "HorizontalPodAutoscaler":
            t = d(spec.get("scaleTargetRef"))
            target = index.get((t.get("kind"), t.get("name")))
            if target is None or group_of(str(t.get("apiVersion", ""))) != group_of(str(target.get("apiVersion"))):
                errs.append(f"{w}: scaleTargetRef {t.get('apiVersion')} {t.get('kind')}/{t.get('name')} is not in this render")
            mn, mx = spec.get("minReplicas", 1), spec.get("maxReplicas")
            if isinstance(mn, int) and isinstance(mx, int) and not 1 <= mn <= mx:
                errs.append(f"{w}: needs 1 <= minReplicas ({mn}) <= maxReplicas ({mx})")
            if target is not None:
                ps = d(d(d(target.get("spec")).get("template")).get("spec"))
                for m in [d(m) for m in lst(spec.get("metrics"))]:
                    r = d(m.get("resource"))
                    if m.get("type") == "Resource" and d(r.get("target")).get("type") == "Utilization":
                        for c in lst(ps.get("containers")):
                            if r.get("name") not in d(d(d(c).get("resources")).get("requests")):
                                errs.append(f"{w}: scales on {r.get('name')} utilisation, but container "
                                            f"{d(c).get('name')!r} of {show(target)} requests no {r.get('name')}")
                replicas = d(target.get("spec")).get("replicas", 1)
                if isinstance(mn, int) and isinstance(mx, int) and isinstance(replicas, int) and not mn <= replicas <= mx:
                    errs.append(f"{w}: {show(target)} has replicas {replicas}, outside [{mn}, {mx}]")
        elif k in ("Secret", "ConfigMap"):
            for field in ("data", "stringData", "binaryData"):
                for key, val in d(o.get(field)).items():
                    if not KEY_NAME.fullmatch(str(key)):
                        errs.append(f"{w}: {field} key {key!r} is not a valid key")
                    if field in ("binaryData",) or (k == "Secret" and field == "data"):
                        try:
                            base64.b64decode(str(val), validate=True)
                        except ValueError:
                            errs.append(f"{w}: {field}.{key} is not base64")


# --------------------------------------------------------------------------
# 4. Rookery's own rules

def flag(c, name):
    """The value of --name=V or --name V in a container's command and args."""
    argv = [str(a) for a in lst(c.get("command")) + lst(c.get("args"))]
    for i, a in enumerate(argv):
        if a == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None


def env_of(c, name):
    return next((d(e) for e in lst(c.get("env")) if d(e).get("name") == name), None)


def secret_value(index, name, key):
    s = index.get(("Secret", name))
    if s is None:
        return None
    if key in d(s.get("stringData")):
        return str(d(s.get("stringData"))[key])
    if key in d(s.get("data")):
        try:
            return base64.b64decode(str(d(s.get("data"))[key])).decode()
        except ValueError:
            return None
    return None


def check_rookery(objs, errs):
    index = {(o.get("kind"), d(o.get("metadata")).get("name")): o for o in objs}
    for o, ps, _, where, vct in pod_templates(objs):
        for c in [d(c) for c in lst(ps.get("containers"))]:
            env_role = env_of(c, "ROOKERY_ROLE")
            role = flag(c, "role") or (env_role or {}).get("value")
            if role == "worker" or role is None:
                if env_of(c, "ROOKERY_STORE"):
                    errs.append(f"{where}: a worker has no store: ROOKERY_STORE is for gateways")
                continue
            check_gateway(o, ps, c, vct, index, errs)
        for c in [d(c) for c in lst(ps.get("containers"))]:
            seeds = env_of(c, "ROOKERY_SEEDS")
            if seeds and isinstance(seeds.get("value"), str):
                check_seeds(seeds["value"], f"{where}.env[ROOKERY_SEEDS]", index, errs)


def check_gateway(o, ps, c, vct, index, errs):
    w = f"{show(o)} (role gateway)"
    # the store: ROOKERY_STORE or --store, literal or from a Secret
    store, e = flag(c, "store"), env_of(c, "ROOKERY_STORE")
    from_secret = None
    if store is None and e is not None:
        if "value" in e:
            store = str(e["value"])
        else:
            r = d(d(e.get("valueFrom")).get("secretKeyRef"))
            from_secret = f"Secret {r.get('name')} key {r.get('key')}"
            store = secret_value(index, r.get("name"), r.get("key"))
            if store is None:
                store = "(external)"      # dangling references are reported by check_references
    if store not in (None, "", "(external)") and not re.match(r"postgres(ql)?://", store):
        errs.append(f"{w}: the store {store!r}{' (' + from_secret + ')' if from_secret else ''} is not a "
                    "postgresql:// or postgres:// URI")
    postgres = store not in (None, "")
    # how many gateways there can be
    replicas = d(o.get("spec")).get("replicas", 1)
    hpa_max = max([d(h.get("spec")).get("maxReplicas", 1) for h in index.values()
                   if h.get("kind") == "HorizontalPodAutoscaler"
                   and d(d(h.get("spec")).get("scaleTargetRef")).get("name") == d(o.get("metadata")).get("name")
                   and d(d(h.get("spec")).get("scaleTargetRef")).get("kind") == o.get("kind")] or [1])
    several = o.get("kind") in ("DaemonSet",) or (isinstance(replicas, int) and replicas > 1) or \
        (isinstance(hpa_max, int) and hpa_max > 1)
    # the data directory's volume
    data = flag(c, "data") or (env_of(c, "ROOKERY_DATA") or {}).get("value") or "/var/lib/rookery"
    mount = next((d(m) for m in lst(c.get("volumeMounts")) if d(m).get("mountPath") == data), None)
    vol = next((d(v) for v in lst(ps.get("volumes")) if mount and d(v).get("name") == mount.get("name")), None)
    claim = index.get(("PersistentVolumeClaim", d(d(vol).get("persistentVolumeClaim")).get("claimName"))) if vol else None
    modes = set(lst(d(claim.get("spec")).get("accessModes"))) if claim else set()
    if mount is None:
        errs.append(f"{w}: nothing is mounted at its data directory {data} (jobs and the SQLite store would "
                    "live on the container's filesystem)")
    if not postgres:
        if several:
            errs.append(f"{w}: on the SQLite store (no ROOKERY_STORE) there is one gateway: replicas "
                        f"{replicas} and HPA maxReplicas {hpa_max} must be 1 (several gateways need "
                        "ROOKERY_STORE=postgresql://...)")
        if o.get("kind") == "Deployment" and d(d(o.get("spec")).get("strategy")).get("type") != "Recreate":
            errs.append(f"{w}: on the SQLite store the strategy must be Recreate (a rolling update runs two "
                        "gateways on one store)")
        if "ReadWriteMany" in modes:
            errs.append(f"{w}: the SQLite store on a ReadWriteMany volume ({show(claim)}): SQLite's locking "
                        "is not safe on network file systems")
    elif several:
        if vct and mount and mount.get("name") in vct:
            errs.append(f"{w}: several gateways with a volume each: they must share one ReadWriteMany claim")
        elif claim is None:
            errs.append(f"{w}: several gateways on PostgreSQL share the data directory {data}: it must be "
                        "a PersistentVolumeClaim (ReadWriteMany)")
        elif "ReadWriteMany" not in modes:
            errs.append(f"{w}: several gateways (replicas {replicas}, HPA maxReplicas {hpa_max}) share "
                        f"{show(claim)}, whose accessModes {sorted(modes)} lack ReadWriteMany")


def check_seeds(value, where, index, errs):
    by_sts = {}
    for entry in [s.strip() for s in value.split(",") if s.strip()]:
        m = re.fullmatch(r"(.+)-(\d+)\.([a-z0-9-]+)(\.[a-z0-9.-]*)?:(\d+)", entry)
        sts = index.get(("StatefulSet", m.group(1))) if m else None
        if sts is None:
            errs.append(f"{where}: {entry!r} is not <statefulset>-<n>.<service>:<port> of a StatefulSet in this render")
            continue
        spec = d(sts.get("spec"))
        if m.group(3) != spec.get("serviceName"):
            errs.append(f"{where}: {entry!r}: {show(sts)}'s pods are named through Service {spec.get('serviceName')!r}")
        ports = {d(p).get("containerPort") for c in lst(d(d(spec.get("template")).get("spec")).get("containers"))
                 for p in lst(d(c).get("ports"))}
        if int(m.group(5)) not in ports:
            errs.append(f"{where}: {entry!r}: port {m.group(5)} is not a containerPort of {show(sts)}")
        by_sts.setdefault(m.group(1), []).append(int(m.group(2)))
    for name, ords in by_sts.items():
        replicas = d(index[("StatefulSet", name)].get("spec")).get("replicas", 1)
        if sorted(ords) != list(range(replicas if isinstance(replicas, int) else 0)):
            errs.append(f"{where}: lists pods {sorted(ords)} of StatefulSet/{name}, which has replicas {replicas}: "
                        "keep the seeds and the replicas in step (0 .. replicas-1, each once)")


# --------------------------------------------------------------------------
# Driver

def check_render(objs):
    errs = []
    for o in objs:
        check_schema(o, errs)
    check_references(objs, errs)
    check_rookery(objs, errs)
    return errs


def render(d):
    return Renderer().build(d)


def targets():
    out = [os.path.join(DEPLOY, "k8s")]
    od = os.path.join(DEPLOY, "overlays")
    if os.path.isdir(od):
        out += [os.path.join(od, n) for n in sorted(os.listdir(od)) if kfile(os.path.join(od, n))]
    return out


def rel(p):
    return os.path.relpath(p, os.path.dirname(DEPLOY))


def canon(objs):
    return {"/".join(map(str, obj_id(o))): json.dumps(o, sort_keys=True) for o in objs}


def compare_kubectl(d, objs):
    try:
        out = subprocess.run(["kubectl", "kustomize", d], capture_output=True, text=True, check=False)
    except OSError:
        return ["kubectl is not installed (--compare-kubectl needs it)"]
    if out.returncode != 0:
        return [f"kubectl kustomize {rel(d)} failed: {out.stderr.strip()}"]
    theirs, ours = canon(load_docs("kubectl kustomize", out.stdout)), canon(objs)
    errs = [f"{rel(d)}: {k} only in {'kubectl' if k in theirs else 'our'} render"
            for k in sorted(set(theirs) ^ set(ours))]
    errs += [f"{rel(d)}: {k} differs from kubectl's render:\n  ours:    {ours[k]}\n  kubectl: {theirs[k]}"
             for k in sorted(set(theirs) & set(ours)) if theirs[k] != ours[k]]
    return errs


def main(argv):
    if argv[:1] == ["--self-test"] and set(argv[1:]) <= {"--keep"}:
        load_kubernetes()
        return self_test("--keep" in argv)
    if argv[:1] == ["--print"] and len(argv) == 2:
        try:
            print(yaml.safe_dump_all(render(argv[1]), sort_keys=False), end="")
        except Error as e:
            print(f"check_manifests: {e}", file=sys.stderr)
            return 1
        return 0
    compare = "--compare-kubectl" in argv
    args = [a for a in argv if a != "--compare-kubectl"]
    if any(a.startswith("-") for a in args):
        print(__doc__, file=sys.stderr)
        return 2
    load_kubernetes()
    dirs = args or targets()
    failed, total = 0, 0
    renderer_components = set()
    for t in dirs:
        r = Renderer()
        try:
            objs = r.build(t)
        except Error as e:
            print(f"FAIL {rel(t)}: {e}")
            failed += 1
            continue
        renderer_components |= r.used_components
        errs = check_render(objs) + (compare_kubectl(t, objs) if compare else [])
        total += len(objs)
        if errs:
            failed += 1
            print(f"FAIL {rel(t)}: {len(errs)} problem(s)")
            for e in errs:
                print(f"  {e}")
        else:
            print(f"ok   {rel(t)}: {len(objs)} objects ({', '.join(sorted(show(o) for o in objs))})"
                  + (", identical to kubectl kustomize" if compare else ""))
    if not args:
        cd = os.path.join(DEPLOY, "components")
        for n in sorted(os.listdir(cd)) if os.path.isdir(cd) else []:
            p = os.path.realpath(os.path.join(cd, n))
            if kfile(p) and p not in renderer_components:
                print(f"FAIL {rel(p)}: component used by no overlay, so never checked")
                failed += 1
    print(f"check_manifests: {len(dirs)} render(s), {total} objects, "
          f"{'all checks passed' if not failed else str(failed) + ' failed'}")
    return 1 if failed else 0


# --------------------------------------------------------------------------
# --self-test: the checker rejects what it should, and renders as kustomize does

FIXTURE = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {config.json: "{}"}
---
apiVersion: v1
kind: Secret
metadata: {name: sec}
stringData: {token: abc}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  replicas: 1
  selector: {matchLabels: {app: demo}}
  template:
    metadata: {labels: {app: demo}}
    spec:
      containers:
        - name: app
          image: demo
          env:
            - {name: TOKEN, valueFrom: {secretKeyRef: {name: sec, key: token}}}
            - {name: CPUS, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}
            - {name: A, value: "1"}
            - {name: B, value: "$(A)/x"}
          ports: [{name: http, containerPort: 8080}]
          readinessProbe: {httpGet: {path: /, port: http}}
          resources: {limits: {cpu: "1", memory: 64Mi}}
          volumeMounts: [{name: cfg, mountPath: /etc/demo}]
      volumes: [{name: cfg, configMap: {name: cfg}}]
---
apiVersion: v1
kind: Service
metadata: {name: app}
spec:
  selector: {app: demo}
  ports: [{name: http, port: 80, targetPort: http}]
"""

# A gateway and its workers, as in deploy/k8s, for Rookery's rules.
GATEWAY = """\
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: v1
kind: Secret
metadata: {name: store}
stringData: {store-dsn: "postgresql://u@db:5432/r"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: gw}
spec:
  replicas: 1
  strategy: {type: Recreate}
  selector: {matchLabels: {c: gw}}
  template:
    metadata: {labels: {c: gw}}
    spec:
      containers:
        - name: gateway
          image: rookery
          args: [--role=gateway, --data=/var/lib/rookery]
          env: [{name: ROOKERY_SEEDS, value: "wk-0.wk:4242,wk-1.wk:4242"}]
          volumeMounts: [{name: data, mountPath: /var/lib/rookery}]
      volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
---
apiVersion: v1
kind: Service
metadata: {name: wk}
spec: {clusterIP: None, selector: {c: wk}, ports: [{port: 4242}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: wk}
spec:
  serviceName: wk
  replicas: 2
  selector: {matchLabels: {c: wk}}
  template:
    metadata: {labels: {c: wk}}
    spec:
      containers:
        - {name: worker, image: rookery, args: [--role=worker], ports: [{containerPort: 4242}]}
"""


def kust(resources="[all.yaml]", extra=""):
    return f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: {resources}\n{extra}"


# Every renderer feature at once; `--self-test --keep` leaves it on disk, and
# `--compare-kubectl DIR/ov` showed kubectl kustomize 5.5 renders it the same.
RENDER_CASE = {
    "base/kustomization.yaml": kust("[all.yaml]", "images: [{name: demo, newName: reg/demo, newTag: '2'}]\n"),
    "base/all.yaml": FIXTURE,
    "comp/kustomization.yaml": ("apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nresources: [extra.yaml]\n"
                                "patches: [{path: p.yaml}]\n"),
    "comp/extra.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\ndata: {a: b}\n",
    "comp/p.yaml": ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\nspec:\n  template:\n    spec:\n"
                    "      containers:\n        - name: app\n          env: [{name: N1, value: '1'}, {name: A, value: patched},"
                    " {name: N2, value: '2'}]\n        - {name: side, image: demo:1}\n"
                    "      volumes: [{name: cfg, $patch: delete}, {name: cfg2, configMap: {name: extra}}]\n"),
    "ov/kustomization.yaml": kust("[../base]", (
        "components: [../comp]\nlabels: [{pairs: {tier: x}, includeSelectors: false}]\n"
        "patches:\n  - target: {kind: Deployment, name: app}\n    patch: |-\n"
        "      - {op: replace, path: /spec/replicas, value: 2}\n"
        "      - {op: add, path: /spec/template/spec/containers/0/volumeMounts/0/name, value: cfg2}\n")),
}


def self_test(keep=False):
    passed, failed = 0, 0
    tmp = tempfile.mkdtemp(prefix="check_manifests.")

    def write(files):
        d = tempfile.mkdtemp(dir=tmp)
        for name, text in files.items():
            p = os.path.join(d, name)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w", encoding="utf-8") as f:
                f.write(text)
        return d

    def run_case(name, files, expect, root="."):
        """expect None: passes; else a substring of one reported problem."""
        nonlocal passed, failed
        d = write(files)
        try:
            objs = render(os.path.join(d, root))
            errs = check_render(objs)
        except Error as e:
            errs, objs = [str(e)], []
        if expect is None:
            ok = not errs
        else:
            ok = any(expect in e for e in errs)
        if ok:
            passed += 1
            print(f"ok   {name}" + (f": rejected ({next(e for e in errs if expect in e)})" if expect else ""))
        else:
            failed += 1
            print(f"FAIL {name}: expected {'no problem' if expect is None else repr(expect)}, got {errs or 'no problem'}")
        return objs

    def mutate(fixture, fn):
        docs = list(yaml.safe_load_all(fixture))
        fn(docs)
        return yaml.safe_dump_all(docs, sort_keys=False)

    k = kust

    def case(name, fn, expect, fixture=FIXTURE, extra=""):
        return run_case(name, {"kustomization.yaml": k(extra=extra), "all.yaml": mutate(fixture, fn)}, expect)

    def dep(docs):
        return next(o for o in docs if o["kind"] in ("Deployment",))

    def ctr(docs):
        return dep(docs)["spec"]["template"]["spec"]["containers"][0]

    nothing = lambda docs: None  # noqa: E731
    case("a valid render passes", nothing, None)
    case("the gateway fixture passes", nothing, None, GATEWAY)
    # schema
    case("unknown field", lambda s: ctr(s).update(imagePullPolicyy="Always"), "imagePullPolicyy: unknown field")
    case("unknown field in a nested object", lambda s: ctr(s)["readinessProbe"]["httpGet"].update(paht="/"), "paht: unknown field")
    case("wrong type (replicas a string)", lambda s: dep(s)["spec"].update(replicas="two"), "expected an integer")
    case("wrong type (env value a number)", lambda s: ctr(s)["env"][2].update(value=1), "expected a string")
    case("wrong type (a list where a mapping goes)", lambda s: dep(s)["spec"].update(selector=[]), "expected a mapping")
    case("missing required field", lambda s: s[3]["spec"]["ports"][0].pop("port"), "missing required field 'port'")
    case("bad enum value", lambda s: ctr(s).update(imagePullPolicy="IfNotPresnt"), "is not one of")
    case("bad quantity", lambda s: ctr(s)["resources"]["limits"].update(cpu="2 cores"), "not a Kubernetes quantity")
    case("unknown apiVersion", lambda s: dep(s).update(apiVersion="apps/v1beta9"), "unknown apiVersion")
    case("kind not in its apiVersion", lambda s: dep(s).update(apiVersion="v1"), "is not in apiVersion")
    case("bad name", lambda s: dep(s)["metadata"].update(name="App_1"), "DNS-1123 subdomain")
    case("bad label value", lambda s: dep(s)["metadata"].update(labels={"a": "no spaces"}), "not a valid label value")
    # references
    case("dangling secretKeyRef", lambda s: ctr(s)["env"][0]["valueFrom"]["secretKeyRef"].update(name="nope"), "Secret 'nope'")
    case("missing Secret key", lambda s: ctr(s)["env"][0]["valueFrom"]["secretKeyRef"].update(key="nokey"), "key 'nokey'")
    case("dangling ConfigMap volume", lambda s: dep(s)["spec"]["template"]["spec"]["volumes"][0]["configMap"].update(name="x"), "ConfigMap 'x'")
    case("Service selector mismatch", lambda s: s[3]["spec"].update(selector={"app": "other"}), "selects no pod template")
    case("workload selector mismatch", lambda s: dep(s)["spec"]["selector"].update(matchLabels={"app": "x"}), "does not match")
    case("probe on a missing port name", lambda s: ctr(s)["readinessProbe"]["httpGet"].update(port="metrics"), "port 'metrics'")
    case("Service targetPort not a pod port", lambda s: s[3]["spec"]["ports"][0].update(targetPort="grpc"), "targetPort 'grpc'")
    case("mount of an unknown volume", lambda s: ctr(s)["volumeMounts"][0].update(name="gone"), "mounts volume 'gone'")
    case("resourceFieldRef without that limit", lambda s: ctr(s)["resources"].pop("limits"), "sets no limits.cpu")
    case("$(VAR) defined after its use", lambda s: ctr(s)["env"].reverse(), "$(A) is not an env variable")
    case("duplicate objects", lambda s: s.append(copy.deepcopy(s[0])), "defined twice")
    # Rookery's rules
    case("SQLite gateway with 2 replicas", lambda s: dep(s)["spec"].update(replicas=2), "there is one gateway", GATEWAY)
    case("SQLite gateway with a rolling update", lambda s: dep(s)["spec"].update(strategy={"type": "RollingUpdate"}), "must be Recreate", GATEWAY)
    case("PostgreSQL gateways on a ReadWriteOnce claim",
         lambda s: (dep(s)["spec"].update(replicas=2, strategy={"type": "RollingUpdate"}),
                    ctr(s)["env"].append({"name": "ROOKERY_STORE", "valueFrom": {"secretKeyRef": {"name": "store", "key": "store-dsn"}}})),
         "lack ReadWriteMany", GATEWAY)
    case("PostgreSQL gateways on a ReadWriteMany claim pass",
         lambda s: (dep(s)["spec"].update(replicas=2, strategy={"type": "RollingUpdate"}),
                    s[0]["spec"].update(accessModes=["ReadWriteMany"]),
                    ctr(s)["env"].append({"name": "ROOKERY_STORE", "valueFrom": {"secretKeyRef": {"name": "store", "key": "store-dsn"}}})),
         None, GATEWAY)
    case("a store DSN that is not PostgreSQL",
         lambda s: (s[1]["stringData"].update({"store-dsn": "mysql://db/r"}),
                    ctr(s)["env"].append({"name": "ROOKERY_STORE", "valueFrom": {"secretKeyRef": {"name": "store", "key": "store-dsn"}}})),
         "not a postgresql://", GATEWAY)
    case("seeds out of step with the workers", lambda s: s[4]["spec"].update(replicas=3), "keep the seeds and the replicas in step", GATEWAY)
    case("a seed on a port the workers lack", lambda s: ctr(s)["env"][0].update(value="wk-0.wk:4243,wk-1.wk:4242"), "port 4243", GATEWAY)
    # the renderer
    run_case("unsupported kustomization field", {"kustomization.yaml": k(extra="namePrefix: x-\n"), "all.yaml": FIXTURE},
             "namePrefix: not implemented")
    run_case("JSON 6902 patch on a missing path", {"kustomization.yaml": k(extra=(
        "patches:\n  - target: {kind: Deployment, name: app}\n    patch: '[{op: replace, path: /spec/paused2/x, value: 1}]'\n")),
        "all.yaml": FIXTURE}, "does not exist")
    run_case("strategic-merge patch matching nothing", {"kustomization.yaml": k(extra=(
        "patches:\n  - patch: '{apiVersion: apps/v1, kind: Deployment, metadata: {name: ghost}, spec: {replicas: 2}}'\n")),
        "all.yaml": FIXTURE}, "matches no resource")
    run_case("file outside the kustomization", {"base/kustomization.yaml": k("[../all.yaml]"), "all.yaml": FIXTURE},
             "outside the kustomization", root="base")
    run_case("overlay inside its base (kustomize's cycle check)", {
        "kustomization.yaml": k(), "all.yaml": FIXTURE, "overlay/kustomization.yaml": k("[..]")}, "cycle", root="overlay")
    run_case("a patch that breaks the schema is caught after rendering", {"kustomization.yaml": k(extra=(
        "patches:\n  - target: {kind: Deployment}\n    patch: '[{op: add, path: /spec/replicas, value: \"3\"}]'\n")),
        "all.yaml": FIXTURE}, "expected an integer")
    # rendering as kustomize does (checked against kubectl kustomize 5.5 by hand)
    objs = run_case("strategic merge, JSON 6902, component, labels and images render", RENDER_CASE, None, root="ov")
    want = {"replicas": 2, "env": ["N1", "A", "N2", "TOKEN", "CPUS", "B"], "A": "patched",
            "containers": ["app", "side"], "images": ["reg/demo:2", "demo:1"], "volumes": ["cfg2"],
            "labels": {"tier": "x"}, "objects": 5}
    got = {}
    try:
        dp = next(o for o in objs if o["kind"] == "Deployment")
        ps = dp["spec"]["template"]["spec"]
        got = {"replicas": dp["spec"]["replicas"], "env": [e["name"] for e in ps["containers"][0]["env"]],
               "A": next(e["value"] for e in ps["containers"][0]["env"] if e["name"] == "A"),
               "containers": [c["name"] for c in ps["containers"]], "images": [c["image"] for c in ps["containers"]],
               "volumes": [v["name"] for v in ps["volumes"]], "labels": dp["metadata"]["labels"], "objects": len(objs)}
    except (StopIteration, KeyError, TypeError) as e:
        got = {"error": repr(e)}
    if got == want:
        passed += 1
        print("ok   the render has kustomize's merge order, patches, component, labels and images")
    else:
        failed += 1
        print(f"FAIL render result: want {want}, got {got}")
    if keep:
        print(f"self-test: the cases are kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"self-test: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
