"""Kubernetes manifests validate against the Kubernetes schemas; kustomize renders the overlays."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.32.0"  # preStop `sleep` needs 1.30+; 1.32 is a common managed default
CHATD_DRAIN_S = 10  # core/settings.py drain_timeout_s


def validate(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {exc.path}")


def base_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((K8S / "base").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def render(overlay: str) -> list[dict[str, Any]]:
    if shutil.which("kustomize"):
        argv = ["kustomize", "build", str(K8S / "overlays" / overlay)]
    elif shutil.which("kubectl"):
        argv = ["kubectl", "kustomize", str(K8S / "overlays" / overlay)]
    else:
        pytest.skip("neither kustomize nor kubectl is installed: overlays not rendered")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_base_manifests_validate() -> None:
    docs = base_docs()
    validate(docs)
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for app in ("restd", "chatd", "worker", "beat"):
        assert ("Deployment", app) in kinds
    for app in ("restd", "chatd"):
        assert ("HorizontalPodAutoscaler", app) in kinds
        assert ("PodDisruptionBudget", app) in kinds
        assert ("Service", app) in kinds


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_overlays_render_and_validate(overlay: str) -> None:
    docs = render(overlay)
    validate(docs)
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {"restd", "chatd", "worker", "beat"}
    for name in ("restd", "chatd"):
        [container] = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["resources"]["requests"]
            refs = [e.get("secretRef", {}).get("name") for e in container["envFrom"]]
            assert "devconnect-secrets" in refs  # secrets by reference, never inline
    chatd = deployments["chatd"]["spec"]["template"]["spec"]
    assert chatd["terminationGracePeriodSeconds"] >= CHATD_DRAIN_S + 10
    secrets = [d for d in docs if d["kind"] == "Secret"]
    # Production references a Secret made outside the repo; only dev generates one.
    assert bool(secrets) == (overlay == "dev")


def test_metrics_are_scraped_on_their_own_ports_never_the_public_ones() -> None:
    """ConfigMap, containers, annotations, headless Services and Prometheus agree."""
    docs = base_docs()
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    wanted = {
        "restd": int(config["DEVCONNECT_RESTD_METRICS_PORT"]),
        "chatd": int(config["DEVCONNECT_CHATD_METRICS_PORT"]),
        "worker": int(config["DEVCONNECT_WORKER_METRICS_PORT"]),
    }
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    scraped = {
        job["job_name"]: job["dns_sd_configs"][0]["port"]
        for job in prometheus["scrape_configs"]
        if "dns_sd_configs" in job
    }
    for app, port in wanted.items():
        template = deployments[app]["spec"]["template"]
        [container] = template["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == port, app
        assert template["metadata"]["annotations"]["prometheus.io/port"] == str(port), app
        [service_port] = services[f"{app}-metrics"]["spec"]["ports"]
        assert service_port["port"] == port and service_port["targetPort"] == "metrics", app
        assert scraped[app] == port, app
    # The public Services reach the API and the chat socket, not the metrics.
    for app in ("restd", "chatd"):
        for port in services[app]["spec"]["ports"]:
            assert port["targetPort"] != "metrics", app
    local = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.local.yml").read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"][0] for job in local["scrape_configs"]
    }
    assert targets == {app: f"127.0.0.1:{port}" for app, port in wanted.items()}
