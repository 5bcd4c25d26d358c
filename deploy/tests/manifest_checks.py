"""Checks of rendered manifests and of the Dockerfile; each returns a list of problems.

Used by run.py. Kept free of Helm and of the network so that each check can be
fed a broken input (run.py's self-tests).
"""

from __future__ import annotations

import base64
import json
import re

# Pod Security Standards, "restricted" profile (which includes "baseline"), as
# documented for Kubernetes 1.30 and later.
ALLOWED_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                        "persistentVolumeClaim", "projected", "secret"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
                "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
SELINUX_TYPES = {None, "", "container_t", "container_init_t", "container_kvm_t"}
SECCOMP_TYPES = {"RuntimeDefault", "Localhost"}
# The gateway's environment variables that hold secrets (docs/deploy.md).
SECRET_ENV = {"PALISADE_REDIS_URL", "PALISADE_PKCS11_MODULE", "PALISADE_PKCS11_URI",
              "PALISADE_PKCS11_PIN", "PALISADE_WEBHOOK_URL", "PALISADE_PEER_REGIONS"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job"}


def pod_templates(objects: list[dict]) -> list[tuple[str, dict]]:
    """(owner, Pod template with metadata.namespace set) for every Pod or workload."""
    found = []
    for o in objects:
        kind = o.get("kind")
        if kind == "Pod":
            template = o
        elif kind in WORKLOAD_KINDS:
            template = o["spec"]["template"]
        elif kind == "CronJob":
            template = o["spec"]["jobTemplate"]["spec"]["template"]
        else:
            continue
        template = {**template, "metadata": {**template.get("metadata", {}),
                                             "namespace": o["metadata"].get("namespace")}}
        found.append((f"{kind}/{o['metadata']['name']}", template))
    return found


def restricted_problems(template: dict) -> list[str]:
    """PSS "restricted" field by field, plus what the chart promises beyond it."""
    spec = template["spec"]
    pod_sc = spec.get("securityContext") or {}
    problems = []

    # Baseline, Pod level.
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            problems.append(f"spec.{field} is true")
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        problems.append("spec.securityContext.windowsOptions.hostProcess is true")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append(f"sysctl {sysctl.get('name')} is not in the safe set")
    for key, value in (template.get("metadata", {}).get("annotations") or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
                value == "runtime/default" or value.startswith("localhost/")):
            problems.append(f"AppArmor annotation {key}={value}")
    if pod_sc.get("runAsUser") == 0:
        problems.append("spec.securityContext.runAsUser is 0")
    # Restricted, Pod level.
    for volume in spec.get("volumes") or []:
        for volume_type in set(volume) - {"name"} - ALLOWED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']}: type {volume_type} is not allowed")
    # Beyond PSS: no API credentials in the Pod.
    if spec.get("automountServiceAccountToken") is not False:
        problems.append("spec.automountServiceAccountToken is not false")

    containers = [c for field in ("initContainers", "containers", "ephemeralContainers")
                  for c in spec.get(field) or []]
    if not containers:
        problems.append("no container")
    for c in containers:
        sc = c.get("securityContext") or {}
        name = f"container {c['name']}"

        def effective(field, sc=sc):
            return sc[field] if field in sc else pod_sc.get(field)

        # Baseline.
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if (effective("windowsOptions") or {}).get("hostProcess"):
            problems.append(f"{name}: windowsOptions.hostProcess")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{name}: hostPort {port['hostPort']}")
        if sc.get("procMount", "Default") != "Default":
            problems.append(f"{name}: procMount {sc['procMount']}")
        selinux = effective("seLinuxOptions") or {}
        if selinux.get("type") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
            problems.append(f"{name}: seLinuxOptions {selinux}")
        apparmor = effective("appArmorProfile")
        if apparmor is not None and apparmor.get("type") not in SECCOMP_TYPES:
            problems.append(f"{name}: appArmorProfile {apparmor}")
        # Restricted.
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if effective("runAsNonRoot") is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        user = effective("runAsUser")
        if not isinstance(user, int) or isinstance(user, bool) or user == 0:
            problems.append(f"{name}: runAsUser is not a non-zero number ({user!r})")
        if (effective("seccompProfile") or {}).get("type") not in SECCOMP_TYPES:
            problems.append(f"{name}: seccompProfile is not RuntimeDefault or Localhost")
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{name}: capabilities.drop lacks ALL")
        # PSS allows NET_BIND_SERVICE; the gateway listens on 7070 and needs none.
        if capabilities.get("add"):
            problems.append(f"{name}: capabilities.add {capabilities['add']}")
        # Beyond PSS: what the chart promises.
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem is not true")
        group = effective("runAsGroup")
        if not isinstance(group, int) or group == 0:
            problems.append(f"{name}: runAsGroup is not a non-zero number ({group!r})")
        resources = c.get("resources") or {}
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in (resources.get(kind) or {}):
                    problems.append(f"{name}: no {resource} {kind}")
    for c in spec.get("containers") or []:
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if probe not in c:
                problems.append(f"container {c['name']}: no {probe}")
    return problems


def selects(selector: dict, labels: dict) -> bool:
    """Kubernetes label selector semantics."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def networkpolicy_problems(objects: list[dict]) -> list[str]:
    """Every Pod is selected by a NetworkPolicy of its namespace covering Ingress and
    Egress, and no rule allows any peer (a rule without from/to)."""
    policies = [o for o in objects if o.get("kind") == "NetworkPolicy"]
    problems = []
    for np in policies:
        name = np["metadata"]["name"]
        for rule in np["spec"].get("ingress") or []:
            if not rule.get("from"):
                problems.append(f"NetworkPolicy {name}: an ingress rule allows any source")
        for rule in np["spec"].get("egress") or []:
            if not rule.get("to"):
                problems.append(f"NetworkPolicy {name}: an egress rule allows any destination")
    for owner, template in pod_templates(objects):
        labels = template["metadata"].get("labels") or {}
        namespace = template["metadata"].get("namespace")
        if not any(np["metadata"].get("namespace") == namespace
                   and {"Ingress", "Egress"} <= set(np["spec"].get("policyTypes") or [])
                   and selects(np["spec"].get("podSelector") or {}, labels)
                   for np in policies):
            problems.append(f"{owner}: no NetworkPolicy selects its Pods for Ingress and Egress")
    return problems


def secret_leaks(objects: list[dict]) -> list[str]:
    """Secret values found outside Secrets (ConfigMaps above all), and secret
    environment variables given by value instead of secretKeyRef."""
    values = {}
    for o in objects:
        if o.get("kind") != "Secret":
            continue
        for key, value in (o.get("stringData") or {}).items():
            values[str(value)] = f"Secret {o['metadata']['name']} key {key}"
        for key, value in (o.get("data") or {}).items():
            values[base64.b64decode(value).decode(errors="replace")] = \
                f"Secret {o['metadata']['name']} key {key}"
    leaks = []
    for o in objects:
        if o.get("kind") == "Secret":
            continue
        text = json.dumps(o)
        where = f"{o.get('kind')} {o.get('metadata', {}).get('name')}"
        for value, origin in values.items():
            if len(value) >= 4 and (value in text or json.dumps(value)[1:-1] in text):
                leaks.append(f"the value of {origin} is in {where}")
    for owner, template in pod_templates(objects):
        for field in ("initContainers", "containers", "ephemeralContainers"):
            for c in template["spec"].get(field) or []:
                for env in c.get("env") or []:
                    if env["name"] in SECRET_ENV and "value" in env:
                        leaks.append(f"{owner} container {c['name']}: {env['name']} given by value")
    return leaks


# Bases known to have no shell: distroless (static, base, cc), scratch.
SHELL_LESS_BASES = ("gcr.io/distroless/", "scratch")
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def dockerfile_problems(text: str) -> list[str]:
    """The promises of deploy/Dockerfile: external base images pinned by digest and
    never "latest"; the final stage, and every stage built on a shell-less base,
    has no RUN or SHELL, a numeric non-root USER, and exec-form HEALTHCHECK and
    ENTRYPOINT."""
    logical = re.sub(r"\\\n", " ", text)
    instructions = []
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))

    stages: list[dict] = []
    problems = []
    for keyword, rest in instructions:
        if keyword == "FROM":
            parts = rest.split()
            image = next(p for p in parts if not p.startswith("--"))
            name = parts[parts.index("AS") + 1] if "AS" in parts else (
                parts[parts.index("as") + 1] if "as" in parts else None)
            parent = next((s for s in stages if s["name"] == image), None)
            if parent is None and image != "scratch":
                last_segment = image.split("/")[-1].split("@")[0]
                if not DIGEST.search(image):
                    problems.append(f"base image {image} is not pinned by digest")
                if ":" not in last_segment or last_segment.endswith(":latest"):
                    problems.append(f"base image {image} is latest (no tag or :latest)")
            stages.append({"name": name, "image": image, "parent": parent,
                           "instructions": list(parent["instructions"]) if parent else []})
        elif stages:
            stages[-1]["instructions"].append((keyword, rest))
    if not stages:
        return ["no FROM"]

    def base(stage):
        while stage["parent"] is not None:
            stage = stage["parent"]
        return stage["image"]

    runtime = [s for s in stages if base(s).startswith(SHELL_LESS_BASES)]
    if stages[-1] not in runtime:
        runtime.append(stages[-1])
        problems.append(f"final stage's base {base(stages[-1])} may have a shell")
    for stage in runtime:
        name = stage["name"] or "final"
        own = dict()
        for keyword, rest in stage["instructions"]:
            own[keyword] = rest  # the last one wins, as in Docker
            if keyword in ("RUN", "SHELL"):
                problems.append(f"stage {name}: {keyword} needs a shell")
        user = own.get("USER", "")
        if not re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", user):
            problems.append(f"stage {name}: USER {user!r} is not a numeric non-root uid[:gid]")
        healthcheck = own.get("HEALTHCHECK", "")
        command = re.sub(r"^(--\S+\s+)*", "", healthcheck)
        if not re.match(r"CMD\s+\[", command):
            problems.append(f"stage {name}: HEALTHCHECK {healthcheck!r} is not in exec form")
        if not own.get("ENTRYPOINT", "").startswith("["):
            problems.append(f"stage {name}: ENTRYPOINT is not in exec form")
    return problems
