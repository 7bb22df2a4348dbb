"""The signed identity of a caller for a tenant's backends, per request."""

from __future__ import annotations

from aiohttp import web

from contract.identity import Caller
from contract.tenants_file import TenantConfig

from . import keys
from .errors import UpstreamUnavailableError


def tenant_secret(tenant: TenantConfig) -> str:
    """The secret shared with the tenant's backends."""
    if tenant.secret is None:  # the config loader refuses tenants without one
        raise UpstreamUnavailableError(f"Tenant '{tenant.subdomain}' has no secret.")
    return tenant.secret.get()


def identity_for(request: web.Request, tenant: TenantConfig, caller: Caller) -> str:
    """The signed identity of `caller` for the tenant's backends."""
    return request.app[keys.IDENTITIES].get(
        secret=tenant_secret(tenant),
        tenant=tenant.subdomain,
        caller=caller,
        host=request[keys.PUBLIC_AUTHORITY],
        scheme=request[keys.SCHEME],
    )
