"""`flexhost deploy k8s` with pools: one backend Deployment, Service and worker per
group of tenants with the same backends; the pools serve their tenants from the
rendered tenants.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from contract.config import ConfigError
from contract.tenants_file import parse_tenants
from deploy.cli import build_parser
from deploy.k8s import K8sOptions, address_groups, render
from tenant_service.config import load_settings
from tenant_service.tenancy import Directory

POOLED = """\
tenants:
  - subdomain: a
    backends: ["http://10.0.0.1:8101"]
  - subdomain: b
    backends: ["http://10.0.0.1:8101/"]
  - subdomain: solo
    backends: ["http://10.0.0.2:8101"]
"""
ADDED = POOLED + '  - subdomain: c\n    backends: ["http://10.0.0.1:8101"]\n'


def rendered(text: str) -> list[dict[str, Any]]:
    """The manifests of a tenants file's text."""
    config = parse_tenants(text, check_secrets=False)
    return [d for d in yaml.safe_load_all(render(config, K8sOptions("f:1"), "t.yaml"))]


def objects(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Kinds and names."""
    return [(d["kind"], d["metadata"]["name"]) for d in docs if d]


def by_name(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """One object."""
    found: dict[str, Any] = next(
        d for d in docs if d and (d["kind"], d["metadata"]["name"]) == (kind, name)
    )
    return found


def pool_name(text: str) -> str:
    """The name of the one pool of a tenants file."""
    [pool], problems = address_groups(parse_tenants(text, check_secrets=False))
    assert not problems
    return pool.name


def test_a_pool_is_one_deployment_service_and_worker() -> None:
    docs = rendered(POOLED)
    pool = pool_name(POOLED)
    names = objects(docs)
    assert names[-6:] == [
        ("Deployment", pool),
        ("Service", pool),
        ("Deployment", f"{pool}-worker"),
        ("Deployment", "flexhost-solo"),
        ("Service", "flexhost-solo"),
        ("Deployment", "flexhost-solo-worker"),
    ]
    assert not [n for n in names if n[1] in ("flexhost-a", "flexhost-b")]
    backend = by_name(docs, "Deployment", pool)["spec"]["template"]["spec"]
    worker = by_name(docs, "Deployment", f"{pool}-worker")["spec"]["template"]["spec"]
    for pod, command in ((backend, "pool"), (worker, "pool-worker")):
        [container] = pod["containers"]
        assert container["args"] == [command]
        assert build_parser().parse_args(container["args"]).command == command
        sources = pod["volumes"][1]["projected"]["sources"]
        assert [s["secret"]["name"] for s in sources] == ["flexhost-a", "flexhost-b"]


def test_adding_a_tenant_to_a_pool_adds_no_deployment() -> None:
    assert pool_name(ADDED) == pool_name(POOLED)
    before = {n for n in objects(rendered(POOLED)) if n[0] == "Deployment"}
    after = {n for n in objects(rendered(ADDED)) if n[0] == "Deployment"}
    assert before == after


def test_tenants_sharing_some_backends_but_not_all_are_refused() -> None:
    text = (
        POOLED
        + '  - subdomain: d\n    backends: ["http://10.0.0.1:8101", "http://10.0.0.3:1"]\n'
    )
    with pytest.raises(ConfigError) as err:
        rendered(text)
    assert any("share http://10.0.0.1:8101" in p for p in err.value.problems)


async def test_the_pool_serves_its_tenants_from_the_rendered_file(
    tmp_path: Path,
) -> None:
    """The pool's TENANT_ADDRESS is its tenants' backend in the rendered
    tenants.yaml: read as the pod would, it serves exactly a and b."""
    docs = rendered(POOLED)
    pool = pool_name(POOLED)
    config_map = by_name(docs, "ConfigMap", "flexhost-tenants")
    (tmp_path / "tenants.yaml").write_text(config_map["data"]["tenants.yaml"])
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for tenant in ("a", "b", "solo"):
        (secrets / tenant).write_text(tenant * 40)
    [container] = by_name(docs, "Deployment", pool)["spec"]["template"]["spec"][
        "containers"
    ]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TENANT_DATABASE_URL"] is None  # from the pool's Secret
    assert container["env"][-2]["valueFrom"]["secretKeyRef"]["name"] == pool
    env |= {
        "TENANT_TENANTS_FILE": str(tmp_path / "tenants.yaml"),
        "TENANT_SECRETS_DIR": str(secrets),
        "TENANT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/{{tenant}}.db",
        "TENANT_REDIS_URL": "redis://redis:6379/0",
    }
    settings = load_settings({k: v for k, v in env.items() if v is not None})
    assert settings.pooled
    directory = Directory(settings)
    await directory.start()
    assert directory.names() == ["a", "b"]
