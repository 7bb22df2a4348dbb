"""`flexhost up`'s processes: one per distinct loopback address, pools where
tenants share one, and the settings each child is started with."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.tenants_file import TenantConfig, TenantsConfig
from deploy.local import Stack, UpOptions, backend_specs
from tenant_service.config import load_settings


def tenant(name: str, *ports: int, demo: bool = False) -> TenantConfig:
    """A tenant with backends on these loopback ports."""
    backends = tuple(f"http://127.0.0.1:{port}" for port in ports)
    return TenantConfig(subdomain=name, name=name, backends=backends, demo=demo)


def config(*tenants: TenantConfig) -> TenantsConfig:
    """A tenants file's content."""
    return TenantsConfig(base_domains=("localhost",), tenants=tenants)


def test_tenants_sharing_an_address_get_one_pool(tmp_path: Path) -> None:
    specs = backend_specs(
        config(tenant("a", 8101), tenant("b", 8101), tenant("solo", 8102)), tmp_path
    )
    assert sorted(specs) == ["pool:8101", "solo"]
    pool = specs["pool:8101"]
    assert pool.pooled
    assert pool.address == "http://127.0.0.1:8101"
    assert pool.tenants == ("a", "b")
    assert pool.database_of("b") == f"sqlite+aiosqlite:///{tmp_path}/b.sqlite3"
    assert not specs["solo"].pooled
    assert specs["solo"].tenant == "solo"


def test_a_tenant_added_to_a_pool_changes_no_process(tmp_path: Path) -> None:
    before = backend_specs(config(tenant("a", 8101), tenant("b", 8101)), tmp_path)
    after = backend_specs(
        config(tenant("a", 8101), tenant("b", 8101), tenant("c", 8101)), tmp_path
    )
    assert before == after  # equal specs: nothing restarts
    assert after["pool:8101"].tenants == ("a", "b", "c")


def test_a_thousand_tenants_on_four_addresses_are_four_backends(
    tmp_path: Path,
) -> None:
    tenants = [tenant(f"t{i:04d}", 8101 + i % 4) for i in range(1000)]
    specs = backend_specs(config(*tenants), tmp_path)
    assert sorted(specs) == [f"pool:{8101 + i}" for i in range(4)]
    assert sum(len(spec.tenants) for spec in specs.values()) == 1000


def test_a_dedicated_tenant_with_replicas_gets_a_backend_per_port(
    tmp_path: Path,
) -> None:
    specs = backend_specs(config(tenant("big", 8101, 8102)), tmp_path)
    assert sorted(specs) == ["big:8101", "big:8102"]


def test_the_first_claim_of_a_port_wins(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lone = TenantConfig(
        subdomain="other", name="other", backends=("http://localhost:8101",)
    )
    specs = backend_specs(config(tenant("a", 8101), lone), tmp_path)
    assert list(specs) == ["a"]
    assert "already used by http://127.0.0.1:8101" in caplog.text


async def test_a_pool_child_gets_the_pool_settings(tmp_path: Path) -> None:
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(
        "tenants:\n"
        + "".join(
            f'  - subdomain: {name}\n    backends: ["http://127.0.0.1:8101"]\n'
            for name in ("a", "b")
        )
    )
    stack = Stack(UpOptions(tenants, tmp_path / "data", redis_url="redis://r:1/0"))
    loaded = await stack.load()  # makes the secrets and the pools' checked copy
    spec = backend_specs(loaded, tmp_path / "data")["pool:8101"]
    for module in ("tenant_service", "tenant_service.scheduling.worker"):
        child = stack._backend_spec("pool:8101", spec, module)
        assert {"TENANT_NAME", "TENANT_SECRET", "TENANT_SECRET_FILE"} <= set(
            child.unset
        )
        settings = load_settings(dict(child.env))
        assert settings.pooled
        assert settings.address == "http://127.0.0.1:8101"
        assert settings.port == 8101
        assert settings.tenants_file == stack.checked_file
        assert settings.secrets_dir == stack.secrets_dir
    assert stack.checked_file.read_bytes() == tenants.read_bytes()
