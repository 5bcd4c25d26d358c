#!/usr/bin/env python3
"""The offline checks of deploy/ (scripts/test.sh deploy), run from target/deploy-venv.

Renders the chart with every values profile and lints it (Helm's Go SDK through
helm-python-sdk), validates the manifests against the Kubernetes schemas
(kubernetes-validate --strict), runs checkov (kubernetes and dockerfile) and
hadolint, checks the Dockerfile's promises, checks every Pod template for Pod
Security Standards "restricted" field by field, that a NetworkPolicy selects
every Pod, that no secret value is rendered outside a Secret, and applies the
Gatekeeper constraints to the rendered manifests. Prints one line per check and
exits 1 if any failed. Nothing here uses the network.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import helm_python as helm
import yaml

from manifest_checks import (
    dockerfile_problems,
    networkpolicy_problems,
    pod_templates,
    restricted_problems,
    secret_leaks,
)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/palisade-gateway"
OUT = ROOT / "target/deploy/rendered"
BIN = Path(sys.executable).parent
RELEASE, NAMESPACE = "gw", "palisade"
# The chart's kubeVersion floor and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ["1.30.0", "1.37.0"]

PROFILES = {
    "default": [],
    "dev": ["values-dev.yaml"],
    "production": ["values-production.yaml"],
    "multi-region": ["values-production.yaml", "values-multi-region.yaml"],
}
# Not a profile: every optional part on, and the Secret rendered from canary
# values, so that a secret value anywhere but in the Secret is found.
CANARY = {
    key: f"canary-{key}-7f3a9c1e5b" for key in
    ("redis-url", "pkcs11-module", "pkcs11-uri", "pkcs11-pin", "webhook-url", "peer-regions")
}
CANARY_OVERRIDES = {
    "secrets": {"create": True, "values": CANARY},
    "softhsm": {"enabled": True},
    "peerRegions": {"enabled": True},
    "redisCa": {"configMap": "redis-ca"},
    "serviceMonitor": {"enabled": True},
    "config": {"extraEnv": [{"name": "EXTRA", "value": "1"}], "region": "eu-west-1",
               "trustedProxies": ["10.0.0.0/8"]},
}

failures = 0


def report(ok: bool, name: str, detail: str = "") -> bool:
    global failures
    failures += 0 if ok else 1
    print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    return ok


def coalesce(base: dict, override: dict) -> dict:
    """Helm's merge of values files: maps merge, anything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = coalesce(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def profile_values(files: list[str]) -> dict:
    values: dict = {}
    for name in files:
        values = coalesce(values, helm.values_from_yaml((CHART / name).read_text()))
    return values


def render(chart: helm.Chart, name: str, values: dict) -> list[dict] | None:
    """Lints, schema-checks and renders one profile; writes target/deploy/rendered/<name>.yaml."""
    lint = helm.lint(CHART, values, strict=True, namespace=NAMESPACE,
                     kube_version=f"v{KUBE_VERSIONS[0]}")
    findings = [m for m in lint["messages"] if m["severity"] >= 2] + lint["errors"]
    report(not findings, f"helm lint --strict {name}", "; ".join(map(str, findings)))
    try:
        chart.validate_schema(chart.merge_values(values))
        report(True, f"values.schema.json {name}")
    except helm.HelmError as e:
        report(False, f"values.schema.json {name}", str(e))
    try:
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    except helm.HelmError as e:
        report(False, f"helm template {name}", str(e))
        return None
    parts = [f"# Source: {path}\n{text.strip()}\n" for path, text in sorted(rendered.items())
             if path.endswith(".yaml") and text.strip()]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.yaml").write_text("---\n".join(parts))
    objects = [doc for part in parts for doc in yaml.safe_load_all(part) if doc]
    report(bool(objects), f"helm template {name}",
           f"{len(objects)} objects: " + ", ".join(sorted(o["kind"] for o in objects)))
    return objects


def redis_ca_mounted(objects: list[dict]) -> bool:
    """With redisCa.configMap: the gateway reads ca.crt from that ConfigMap, read-only."""
    for o in objects:
        if o["kind"] != "Deployment":
            continue
        spec = o["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        source = volumes.get("redis-ca", {}).get("configMap", {})
        for c in spec["containers"]:
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            mounts = [m for m in c.get("volumeMounts", []) if m["name"] == "redis-ca"]
            if (env.get("PALISADE_REDIS_CA") == "/etc/palisade/redis-ca/ca.crt"
                    and [m.get("readOnly") for m in mounts] == [True]
                    and mounts[0]["mountPath"] == "/etc/palisade/redis-ca"
                    and source.get("name") == "redis-ca"
                    and source.get("items") == [{"key": "ca.crt", "path": "ca.crt"}]):
                return True
    return False


def run(name: str, command: list[str], ok_codes=(0,)) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode not in ok_codes:
        report(False, name, f"exit {result.returncode}\n{result.stdout}{result.stderr}")
    return result


def kubernetes_validate(files: list[Path]) -> None:
    for version in KUBE_VERSIONS:
        for path in files:
            result = run(f"kubernetes-validate --strict {version} {path.name}",
                         [str(BIN / "kubernetes-validate"), "--strict", "-k", version, str(path)])
            if result.returncode != 0:
                continue
            passed = result.stdout.count(" passed for resource ")
            # Custom resources (ServiceMonitor) have no schema here: say so.
            unknown = re.findall(r"Couldn't find schema for kind (\w+)", result.stdout + result.stderr)
            report(passed > 0, f"kubernetes-validate --strict {version} {path.name}",
                   f"{passed} objects valid" + (f"; no schema for {', '.join(sorted(set(unknown)))}"
                                                " (custom resource, not validated)" if unknown else ""))


CHECKOV_SKIPS = yaml.safe_load((ROOT / "deploy/tests/checkov.yaml").read_text())["skip-check"]


def checkov() -> None:
    for framework, target in (("kubernetes", ["-d", str(OUT)]),
                              ("dockerfile", ["-f", str(ROOT / "deploy/Dockerfile")])):
        result = run(f"checkov {framework}",
                     [str(BIN / "checkov"), "--skip-download", "--output", "json",
                      "--config-file", str(ROOT / "deploy/tests/checkov.yaml"),
                      "--framework", framework, *target], ok_codes=(0, 1))
        if result.returncode not in (0, 1):
            continue
        summary = json.loads(result.stdout)
        if isinstance(summary, list):
            summary = summary[0]
        counts = summary["summary"]
        failed = summary["results"].get("failed_checks", [])
        skipped = sorted({c["check_id"] for c in summary["results"].get("skipped_checks", [])})
        detail = (f"{counts['passed']} passed, {counts['failed']} failed, "
                  f"{counts['parsing_errors']} parsing errors; skipped by annotation: "
                  f"{', '.join(skipped) or 'none'}")
        if framework == "kubernetes":
            detail += f"; by checkov.yaml: {', '.join(CHECKOV_SKIPS)}"
        detail += "".join(f"\n    {c['check_id']} {c['check_name']}: {c['resource']} in {c['file_path']}"
                          for c in failed)
        report(counts["failed"] == 0 and counts["parsing_errors"] == 0 and counts["passed"] > 0,
               f"checkov {framework}", detail)


def gatekeeper(files: dict[str, Path]) -> None:
    for name, path in files.items():
        # A profile that pulls by tag must be refused by the digest constraint.
        expect = [] if "@sha256:" in (ROOT / path).read_text() else ["--expect", "palisade-image-digest"]
        result = run(f"gatekeeper {name}",
                     ["cargo", "run", "--quiet", "--locked", "-p", "palisade-deploy-tests",
                      "--bin", "gatekeeper-check", "--", *expect, str(path)], ok_codes=(0, 1))
        for line in result.stdout.splitlines():
            if line.startswith("PASS") or line.startswith("FAIL"):
                report(line.startswith("PASS"), line[5:])
            else:
                print(line)
        if result.returncode not in (0, 1) or (result.returncode == 1 and "FAIL" not in result.stdout):
            report(False, f"gatekeeper {name}", result.stderr.strip())


def manifest_checks(name: str, objects: list[dict]) -> None:
    templates = pod_templates(objects)
    report(bool(templates), f"pod templates {name}", f"{len(templates)} found")
    for owner, template in templates:
        problems = restricted_problems(template)
        report(not problems, f"PSS restricted {name} {owner}", "; ".join(problems))
    problems = networkpolicy_problems(objects)
    report(not problems, f"NetworkPolicy selects every Pod {name}", "; ".join(problems))
    leaks = secret_leaks(objects)
    report(not leaks, f"no secret value outside a Secret {name}", "; ".join(leaks))


def self_tests(objects: list[dict]) -> None:
    """The checks must be able to fail: each mutation of a passing render must be caught."""
    def pod_spec(objs):
        return next(o for o in objs if o["kind"] == "Deployment")["spec"]["template"]["spec"]

    def container_sc(spec):
        return spec["containers"][0]["securityContext"]

    mutations = {
        "runAsNonRoot false": lambda s: container_sc(s).update(runAsNonRoot=False),
        "runAsUser 0": lambda s: s["securityContext"].update(runAsUser=0),
        "capability added": lambda s: container_sc(s)["capabilities"].update(add=["NET_ADMIN"]),
        "privilege escalation": lambda s: container_sc(s).pop("allowPrivilegeEscalation"),
        "seccomp Unconfined": lambda s: container_sc(s).update(seccompProfile={"type": "Unconfined"}),
        "hostPath volume": lambda s: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        "writable root": lambda s: container_sc(s).update(readOnlyRootFilesystem=False),
        "token mounted": lambda s: s.pop("automountServiceAccountToken"),
        "no limits": lambda s: s["containers"][0]["resources"].pop("limits"),
    }
    for what, mutate in mutations.items():
        broken = copy.deepcopy(objects)
        mutate(pod_spec(broken))
        problems = [p for _, t in pod_templates(broken) for p in restricted_problems(t)]
        report(bool(problems), f"self-test: PSS check catches {what}", "; ".join(problems[:1]))

    broken = copy.deepcopy(objects)
    for o in broken:
        if o["kind"] == "NetworkPolicy":
            o["spec"]["podSelector"] = {"matchLabels": {"app": "other"}}
    report(bool(networkpolicy_problems(broken)), "self-test: NetworkPolicy check catches an unselected Pod")
    broken = copy.deepcopy(objects)
    for o in broken:
        if o["kind"] == "NetworkPolicy":
            o["spec"]["egress"].append({"ports": [{"port": 443}]})
    report(bool(networkpolicy_problems(broken)), "self-test: NetworkPolicy check catches an egress rule to any peer")

    broken = copy.deepcopy(objects)
    secret = next(o for o in broken if o["kind"] == "Secret")
    broken.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "leak"},
                   "data": {"url": "x " + secret["stringData"]["redis-url"]}})
    report(bool(secret_leaks(broken)), "self-test: secret check catches a value in a ConfigMap")

    problems = dockerfile_problems(
        "FROM debian:latest\nRUN apt-get update\nUSER root\nHEALTHCHECK CMD curl -f http://localhost/\n")
    report(len(problems) >= 4, "self-test: Dockerfile check catches latest, no digest, root, shell",
           "; ".join(problems))


def schema_self_tests(chart: helm.Chart) -> None:
    """values.schema.json and the templates must refuse unsafe values."""
    bad = {
        "an unknown key": {"imagee": {"tag": "1"}},
        "the latest tag": {"image": {"tag": "latest"}},
        "a short digest": {"image": {"digest": "sha256:0123"}},
        "a hostPath volume": {"extraVolumes": [{"name": "h", "hostPath": {"path": "/"}}]},
        "an nfs volume": {"extraVolumes": [{"name": "n", "nfs": {"server": "x", "path": "/"}}]},
        "a secret variable in extraEnv": {
            "config": {"extraEnv": [{"name": "PALISADE_PKCS11_PIN", "value": "1234"}]}},
        "runAsUser 0": {"securityContext": {"runAsUser": 0}},
        "a secret variable (peer regions) in extraEnv": {
            "config": {"extraEnv": [{"name": "PALISADE_PEER_REGIONS", "value": "eu=redis://:pw@x"}]}},
        "a trusted proxy prefix longer than the address": {"config": {"trustedProxies": ["10.0.0.0/33"]}},
        "a public origin with port 0": {"config": {"publicOrigin": "https://auth.example.com:0"}},
    }
    for what, values in bad.items():
        try:
            chart.validate_schema(chart.merge_values(values))
            report(False, f"self-test: values.schema.json refuses {what}", "accepted")
        except helm.HelmError as e:
            report(True, f"self-test: values.schema.json refuses {what}", str(e).splitlines()[-1])
    # Webhooks off: no egress to the internet at all.
    policy = chart.render({"webhook": {"enabled": False}}, name=RELEASE, namespace=NAMESPACE)
    policy = "".join(t for p, t in policy.items() if p.endswith("networkpolicy.yaml"))
    report("0.0.0.0/0" not in policy and "::/0" not in policy and "NetworkPolicy" in policy,
           "self-test: without webhooks the NetworkPolicy allows no egress to the internet")
    # A grace period shorter than the shutdown would kill the Pod before it saves.
    refused(chart, "a grace period shorter than a shutdown", {"terminationGracePeriodSeconds": 30},
            "shorter than a shutdown")
    refused(chart, "one state claim for several replicas", {"state": {"existingClaim": "shared"}},
            "existingClaim")
    # The template refuses "latest" on its own, for installs that skip the schema.
    with tempfile.TemporaryDirectory() as tmp:
        copy_dir = Path(tmp) / CHART.name
        shutil.copytree(CHART, copy_dir)
        (copy_dir / "values.schema.json").unlink()
        with helm.Chart.load(copy_dir) as unchecked:
            refused(unchecked, "the latest tag (without the schema)", {"image": {"tag": "latest"}},
                    "latest")


def refused(chart: helm.Chart, what: str, values: dict, says: str) -> None:
    """The template must fail to render `values`, with an error that says `says`."""
    try:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
        report(False, f"self-test: the template refuses {what}", "rendered")
    except helm.HelmError as e:
        report(says in str(e), f"self-test: the template refuses {what}", str(e))

def main() -> int:
    print(f"tools: helm SDK {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__}), "
          f"Kubernetes schemas {', '.join(KUBE_VERSIONS)}", flush=True)
    rendered: dict[str, Path] = {}
    with helm.Chart.load(CHART) as chart:
        for name, files in PROFILES.items():
            objects = render(chart, name, profile_values(files))
            if objects is not None:
                rendered[name] = (OUT / f"{name}.yaml").relative_to(ROOT)
                manifest_checks(name, objects)
        canary = render(chart, "secret-canary", coalesce(profile_values(PROFILES["production"]),
                                                         CANARY_OVERRIDES))
        if canary is not None:
            rendered["secret-canary"] = (OUT / "secret-canary.yaml").relative_to(ROOT)
            manifest_checks("secret-canary", canary)
            canary_text = (OUT / "secret-canary.yaml").read_text()
            outside = [o for o in canary if o["kind"] != "Secret"]
            report(all(v not in yaml.safe_dump(outside) for v in CANARY.values())
                   and all(v in canary_text for v in CANARY.values()),
                   "canary secret values appear only in the Secret")
            report(redis_ca_mounted(canary), "redisCa: the CA file is mounted read-only and named by PALISADE_REDIS_CA")
            self_tests(canary)
        schema_self_tests(chart)

    kubernetes_validate([*rendered.values(), Path("deploy/namespace.yaml")])
    checkov()

    result = run("hadolint", [str(BIN / "hadolint"), "--format", "json", "deploy/Dockerfile"],
                 ok_codes=(0, 1))
    findings = json.loads(result.stdout or "[]")
    report(result.returncode == 0 and not findings, "hadolint deploy/Dockerfile",
           "; ".join(f"{f['code']} line {f['line']}: {f['message']}" for f in findings))
    problems = dockerfile_problems((ROOT / "deploy/Dockerfile").read_text())
    report(not problems, "Dockerfile promises (digest-pinned bases, no latest, numeric non-root "
           "USER, no shell or RUN in the runtime stages, exec-form HEALTHCHECK)", "; ".join(problems))
    dockerignore = (ROOT / ".dockerignore").read_text().split()
    report(all(p in dockerignore for p in (".git", "target")), ".dockerignore excludes .git and target")

    for path in sorted((ROOT / "deploy/mesh").rglob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        ok = bool(docs) and all({"apiVersion", "kind", "metadata"} <= d.keys() for d in docs)
        report(ok, f"mesh {path.relative_to(ROOT)}", f"{len(docs)} objects (custom resources: "
               "parsed, not schema-validated)")

    gatekeeper(rendered)
    print(f"deploy: {failures} check(s) failed" if failures else "deploy: every check passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
