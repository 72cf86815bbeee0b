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
