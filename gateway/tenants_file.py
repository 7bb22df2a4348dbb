"""Re-export of contract.tenants_file for gateway/tenants.py (#14).

The parser moved to contract/ (the backends read tenants.yaml too); this module
goes once gateway/tenants.py imports contract.tenants_file itself.
"""

from contract.tenants_file import TenantConfig, TenantsConfig, load_tenants

__all__ = ["TenantConfig", "TenantsConfig", "load_tenants"]
