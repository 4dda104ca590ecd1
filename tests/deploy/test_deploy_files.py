"""Every deployment file parses and follows policy: pinned images, probes, secrets by reference,
one active scheduler, settings that the service really accepts."""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from marketguard.config import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))
K8S_FILES = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
COMPOSE = DEPLOY / "docker-compose.yml"
PINNED = re.compile(r"^[\w./-]+(:[\w][\w.-]*)(@sha256:[0-9a-f]{64})?$|^[\w./-]+@sha256:[0-9a-f]{64}$")


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(REPO)) for p in paths]


def _docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _pinned(image: str) -> bool:
    return bool(PINNED.match(image)) and not image.endswith(":latest")


@pytest.mark.parametrize("path", YAML_FILES, ids=_ids(YAML_FILES))
def test_yaml_parses(path: Path) -> None:
    docs = _docs(path)
    assert docs and all(isinstance(d, dict) for d in docs), "each document must be a mapping"


def test_compose_services_and_pinned_images() -> None:
    compose = _docs(COMPOSE)[0]
    services = compose["services"]
    assert {"marketguard", "elasticsearch", "kibana", "kibana-import", "prometheus", "alertmanager", "grafana"} <= set(services)
    unpinned = [f"{n}: {s.get('image')}" for n, s in services.items() if not _pinned(s.get("image", ""))]
    assert not unpinned, f"pin every image tag (no :latest, no bare names): {unpinned}"
    assert "healthcheck" in services["marketguard"] and "/healthz" in str(services["marketguard"]["healthcheck"])


def test_compose_mounts_exist_and_wire_provisioning() -> None:
    """Bind mounts point at files in the repo (secrets excepted); Grafana and Kibana get ours."""
    services = _docs(COMPOSE)[0]["services"]
    missing = []
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith(".") and "secrets" not in source and not (DEPLOY / source).exists():
                missing.append(f"{name}: {source}")
    assert not missing, missing
    grafana = " ".join(services["grafana"]["volumes"])
    assert "./grafana/provisioning:/etc/grafana/provisioning" in grafana and "../dashboards/grafana:" in grafana
    assert "../dashboards/kibana:" in " ".join(services["kibana-import"]["volumes"])
    assert "_import" in " ".join(services["kibana-import"]["command"])
    assert "./prometheus/rules:/etc/prometheus/rules" in " ".join(services["prometheus"]["volumes"])


def test_dockerfile_base_image_pinned() -> None:
    bases = re.findall(r"^FROM\s+(\S+)", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert bases and all(_pinned(b) for b in bases), bases


def test_grafana_provisioning_matches_dashboards_and_compose() -> None:
    datasources = _docs(DEPLOY / "grafana/provisioning/datasources/marketguard.yml")[0]["datasources"]
    types = [d["type"] for d in datasources]
    assert types.count("prometheus") == 1 and types.count("elasticsearch") == 3
    for kind in ("events", "alerts", "incidents"):  # dashboards pick them by name regex
        assert any(kind in d["name"].lower() and d["jsonData"]["index"] == f"marketguard-{kind}*" for d in datasources), kind
    provider = _docs(DEPLOY / "grafana/provisioning/dashboards/marketguard.yml")[0]["providers"][0]
    mount = next(v for v in _docs(COMPOSE)[0]["services"]["grafana"]["volumes"] if v.startswith("../dashboards/grafana"))
    assert mount.split(":")[1] == provider["options"]["path"]


def _k8s() -> list[dict[str, Any]]:
    return [d for p in K8S_FILES for d in _docs(p)]


@pytest.mark.parametrize("path", K8S_FILES, ids=_ids(K8S_FILES))
def test_k8s_objects_have_required_keys(path: Path) -> None:
    for doc in _docs(path):
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "marketguard"


def _deployment() -> dict[str, Any]:
    return next(d for d in _k8s() if d["kind"] == "Deployment")


def test_k8s_deployment_policy() -> None:
    """Probes on /healthz, resources, pinned image, secrets by reference, one scheduler."""
    deploy = _deployment()
    spec = deploy["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate", (
        "one active scheduler: the embedded store allows one writer (see deploy/README.md)"
    )
    (container,) = spec["template"]["spec"]["containers"]
    assert _pinned(container["image"])
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz", probe
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]) and container["resources"]["limits"]
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["MARKETGUARD_PSEUDONYMISATION_KEY"]["valueFrom"]
    assert not any("value" in e and "KEY" in e["name"] for e in container["env"]), "no secret values inline"
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()


def test_k8s_service_selects_deployment() -> None:
    service = next(d for d in _k8s() if d["kind"] == "Service")
    pod = _deployment()["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    ports = {p["name"] for c in pod["spec"]["containers"] for p in c["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports


def test_k8s_volumes_resolve() -> None:
    objects = {(d["kind"], d["metadata"]["name"]) for d in _k8s()}
    for volume in _deployment()["spec"]["template"]["spec"]["volumes"]:
        if "configMap" in volume:
            assert ("ConfigMap", volume["configMap"]["name"]) in objects
        if "persistentVolumeClaim" in volume:
            assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in objects


def test_k8s_configmap_is_valid_settings() -> None:
    """The ConfigMap's marketguard.yaml is accepted by the service's own Settings model."""
    config = next(d for d in _k8s() if d["kind"] == "ConfigMap")
    values = yaml.safe_load(config["data"]["marketguard.yaml"])
    settings = Settings(**values)
    assert settings.host == "0.0.0.0" and settings.port == 8080


def test_systemd_unit() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "systemd" / "marketguard.service")
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    service = unit["Service"]
    assert service["ExecStart"].endswith("marketguard serve")
    assert service["User"] != "root" and service["Restart"] == "on-failure"
    assert service.get("NoNewPrivileges") == "true"


def test_readme_explains_every_path() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for item in ("docker-compose.yml", "kubernetes/", "systemd/", "prometheus/", "alertmanager/", "grafana/",
                 "One active scheduler", "pending-metrics.yml"):
        assert item in readme, item
