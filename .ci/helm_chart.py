#!/usr/bin/env python3
"""Validates the Helm chart (deploy/helm/dcrship) and the raw manifests (deploy/kubernetes).

The helm binary is not in the registries CI reaches; Helm's own Go engine is, as the
`helm-python-sdk` wheel (libhelm_c, Helm v4). So this script, run by .ci/run in a venv it makes:
  1. `helm lint` the chart: no errors;
  2. renders it (`helm template`) for the default values (DaemonSet) and for other modes and
     values, and checks every document against the Kubernetes schemas (kubernetes-validate,
     --strict: unknown fields are errors) for the oldest and newest supported versions;
  3. checks what the schemas cannot: the DaemonSet/Deployment's selector matches its pod
     labels, every volumeMount names a volume, the probes hit /live and /health on the named
     port, the service account exists with the workload identity annotation, hostPath mounts
     are read-only, the release's own logs are excluded;
  4. feeds every agent.toml (the chart's ConfigMaps and deploy/kubernetes/daemonset.yaml's) to
     `dcrship check --config`, the agent's own validation.
Usage: python3 .ci/helm_chart.py path/to/dcrship-binary
"""
import os
import subprocess
import sys
import tempfile
import tomllib

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "deploy", "helm", "dcrship")
KUBE_VERSIONS = ["1.29.0", "1.37.0"]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def docs_of(text):
    return [d for d in yaml.safe_load_all(text) if d]


def validate_schema(doc, where):
    for v in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(doc, v, strict=True)
        except kubernetes_validate.ValidationError as e:
            check(False, f"{where}: {doc['kind']} invalid for Kubernetes {v}: {e.message} at {list(e.path)}")


def check_agent_toml(text, where, binary):
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        check(False, f"{where}: agent.toml is not TOML: {e}")
        return
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(text)
    env = dict(os.environ, NODE_NAME="aks-nodepool1-0", DCRSHIP_LOG_FORMAT="text")
    r = subprocess.run([binary, "check", "--config", f.name], capture_output=True, text=True, env=env)
    os.unlink(f.name)
    check(r.returncode == 0, f"{where}: dcrship check refuses agent.toml:\n{r.stderr}{r.stdout}")


def check_workload(w, sas, where, readiness):
    spec = w["spec"]
    pod = spec["template"]
    labels = pod["metadata"].get("labels", {})
    for k, v in spec["selector"]["matchLabels"].items():
        check(labels.get(k) == v, f"{where}: selector {k}={v} does not match the pod labels")
    check(labels.get("azure.workload.identity/use") == "true", f"{where}: pod lacks azure.workload.identity/use")
    podspec = pod["spec"]
    check(podspec.get("serviceAccountName") in sas, f"{where}: service account {podspec.get('serviceAccountName')} not rendered")
    volumes = {v["name"]: v for v in podspec.get("volumes", [])}
    agent = [c for c in podspec["containers"] if c["name"] == "dcrship"]
    check(len(agent) == 1, f"{where}: one dcrship container")
    for c in podspec["containers"]:
        for m in c.get("volumeMounts", []):
            check(m["name"] in volumes, f"{where}: {c['name']} mounts {m['name']}, which is no volume")
            if "hostPath" in volumes.get(m["name"], {}) and m["mountPath"].startswith("/var/log"):
                check(m.get("readOnly") is True, f"{where}: host logs mounted writable")
    for c in agent:
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        check("metrics" in ports, f"{where}: no metrics port")
        live = c.get("livenessProbe", {}).get("httpGet", {})
        check((live.get("path"), live.get("port")) == ("/live", "metrics"), f"{where}: liveness is not GET /live")
        ready = c.get("readinessProbe", {}).get("httpGet", {})
        if readiness:
            check((ready.get("path"), ready.get("port")) == ("/health", "metrics"), f"{where}: readiness is not GET /health")
        else:
            check(not ready, f"{where}: a sidecar must not gate its app's readiness on delivery")
        sc = c.get("securityContext", {})
        check(sc.get("allowPrivilegeEscalation") is False and sc.get("readOnlyRootFilesystem") is True
              and sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: securityContext not locked down")
        check("limits" in c.get("resources", {}) and "requests" in c.get("resources", {}), f"{where}: resources")
        mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
        check("/var/lib/dcrship" in mounts, f"{where}: state not mounted")
        if "--config" in c.get("args", []):
            check("/etc/dcrship" in mounts, f"{where}: config not mounted")


def check_rendered(files, where, binary, expect):
    docs = []
    for name, text in files.items():
        if name.endswith(".yaml"):
            docs += [(name, d) for d in docs_of(text)]
    kinds = sorted(d["kind"] for _, d in docs)
    check(kinds == sorted(expect), f"{where}: kinds {kinds}, expected {sorted(expect)}")
    sas = {d["metadata"]["name"] for _, d in docs if d["kind"] == "ServiceAccount"}
    for name, d in docs:
        validate_schema(d, f"{where} {name}")
        if d["kind"] == "ServiceAccount":
            check("azure.workload.identity/client-id" in d["metadata"].get("annotations", {}), f"{where}: no client-id annotation")
        if d["kind"] in ("DaemonSet", "Deployment"):
            check_workload(d, sas, f"{where} {name}", readiness=d["kind"] == "DaemonSet")
        if d["kind"] == "ConfigMap":
            check_agent_toml(d["data"]["agent.toml"], f"{where} {name}", binary)
    return docs


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "dcrship")
    lint = helm.lint(CHART)
    check(not lint["errors"] and all(m["severity"] < 3 for m in lint["messages"]), f"helm lint: {lint}")
    cases = [
        ("default values", {}, "dcrship", ["ConfigMap", "DaemonSet", "ServiceAccount"]),
        ("sidecar", {"mode": "sidecar"}, "shop", ["ConfigMap", "Deployment", "ServiceAccount"]),
        ("text, cri, extra config", {
            "daemonset": {"format": "text", "runtime": "cri", "exclude": ["/var/log/containers/*_kube-system_*.log"]},
            "azure": {"tenantId": "11111111-1111-1111-1111-111111111111"},
            "agent": {"extraConfig": "[outputs.logs.columns]\nLogMessage = \"string\"\nPodName = \"string\""},
            "priorityClassName": "system-node-critical",
        }, "logging", ["ConfigMap", "DaemonSet", "ServiceAccount"]),
    ]
    for where, values, ns, expect in cases:
        with helm.Chart.load(CHART) as chart:
            files = chart.render(values, name="dcrship", namespace=ns)
        docs = check_rendered(files, where, binary, expect)
        for _, d in docs:
            if d["kind"] == "ConfigMap" and d["metadata"]["namespace"] == ns:
                cfg = tomllib.loads(d["data"]["agent.toml"])
                pods = cfg.get("inputs", {}).get("pods")
                if pods:
                    check(f"/var/log/containers/*_{ns}_*.log" in pods["exclude"], f"{where}: own namespace not excluded")
                    check("container" in pods, f"{where}: no [inputs.pods.container]")
    # a value the chart needs, missing: a clear error, not a broken manifest
    try:
        with helm.Chart.load(CHART) as chart:
            chart.render({"azure": {"dcr": ""}}, name="dcrship", namespace="x")
        check(False, "rendering without azure.dcr should fail")
    except Exception as e:  # the SDK's error type for a failed render
        check("azure.dcr is required" in str(e), f"missing azure.dcr: {e}")

    # the raw manifests
    for name in ("daemonset.yaml", "sidecar.yaml"):
        path = os.path.join(ROOT, "deploy", "kubernetes", name)
        with open(path) as f:
            docs = docs_of(f.read())
        sas = {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"}
        for d in docs:
            validate_schema(d, name)
            if d["kind"] == "ConfigMap":
                check_agent_toml(d["data"]["agent.toml"], name, binary)
            if d["kind"] in ("DaemonSet", "Deployment"):
                check_workload(d, sas, name, readiness=d["kind"] == "DaemonSet")
    if failures:
        print(f"{len(failures)} chart check(s) failed")
        sys.exit(1)
    print("helm chart and manifests: ok")


if __name__ == "__main__":
    main()
