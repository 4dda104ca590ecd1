"""The replicated Kubernetes variant (deploy/kubernetes/elasticsearch/): several replicas on the
Elasticsearch store, one scheduler by lease; the DuckDB variant stays at one replica."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from marketguard.config import Settings

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "deploy" / "kubernetes"
ES = BASE / "elasticsearch"
PINNED_TAG = ":0.1.0"


def _objects(folder: Path) -> dict[str, dict[str, Any]]:
    docs = [d for p in sorted(folder.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    return {d["kind"]: d for d in docs}


@pytest.fixture(scope="module")
def es() -> dict[str, dict[str, Any]]:
    return _objects(ES)


def _settings(configmap: dict[str, Any]) -> Settings:
    return Settings(**yaml.safe_load(configmap["data"]["marketguard.yaml"]))


def test_es_variant_runs_several_replicas_on_elasticsearch(es):
    deploy = es["Deployment"]
    assert deploy["spec"]["replicas"] > 1 and deploy["spec"]["strategy"]["type"] == "RollingUpdate"
    volumes = deploy["spec"]["template"]["spec"]["volumes"]
    assert not [v for v in volumes if "persistentVolumeClaim" in v], "no ReadWriteOnce volume may pin replicas"
    (config_volume,) = [v for v in volumes if "configMap" in v]
    assert config_volume["configMap"]["name"] == es["ConfigMap"]["metadata"]["name"]
    settings = _settings(es["ConfigMap"])
    assert settings.store == "elasticsearch"
    assert 0 < settings.leader_renew_s * 2 < settings.leader_lease_s, "at least two renewals per lease"


def test_es_variant_keeps_base_policy(es):
    """Same name as the DuckDB Deployment (only one variant exists at a time), probes on
    /healthz, pinned image, every secret by reference, the same key on every replica."""
    deploy = es["Deployment"]
    assert deploy["metadata"]["name"] == _objects(BASE)["Deployment"]["metadata"]["name"]
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(PINNED_TAG)
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz", probe
    env = {e["name"]: e for e in container["env"]}
    for name in ("MARKETGUARD_PSEUDONYMISATION_KEY", "MARKETGUARD_ES_API_KEY"):
        assert "secretKeyRef" in env[name]["valueFrom"], name
    assert not any("value" in e and "KEY" in e["name"] for e in container["env"])


def test_es_variant_selectors_match(es):
    pod_labels = es["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        spec = es[kind]["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        assert selector.items() <= pod_labels.items(), kind
        assert es[kind]["metadata"]["namespace"] == "marketguard"
    # console sessions live in the store, so any replica may answer: no affinity needed
    assert es["Service"]["spec"].get("sessionAffinity", "None") == "None"
    assert es["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1


def test_duckdb_variant_stays_single():
    base = _objects(BASE)
    assert _settings(base["ConfigMap"]).store == "duckdb"
    assert base["Deployment"]["spec"]["replicas"] == 1 and base["Deployment"]["spec"]["strategy"]["type"] == "Recreate"
