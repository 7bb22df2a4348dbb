"""FlexMeasures' row-level permissions on assets and sensors (reference section 6).

Readers: members of the owning account, consultants of its consultancy, admins and
admin-readers; public assets (no account) are readable by every logged-in user.
Asset update and child creation: any member; asset deletion: account-admins. Sensor
data may be posted by any member; sensor update/deletion and data deletion need an
account-admin. Consultants get the rights of the account-admins of their clients.
Admins may do everything.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenant_service.identity import ACCOUNT_ADMIN, Principal


@dataclass(frozen=True, slots=True)
class Owner:
    """Who owns an asset (or the asset of a sensor): None account = public."""

    account_id: int | None
    consultancy_account_id: int | None


def may_read(who: Principal, owner: Owner) -> bool:
    """Read an asset or sensor (and its data)."""
    if owner.account_id is None or who.reads_all:
        return True
    return owner.account_id == who.account_id or who.consults(
        owner.consultancy_account_id
    )


def is_member(who: Principal, owner: Owner) -> bool:
    """A user of the owning account, a consultant of it, or an admin."""
    if who.is_admin:
        return True
    if owner.account_id is None:
        return False  # public assets are changed by admins only
    return owner.account_id == who.account_id or who.consults(
        owner.consultancy_account_id
    )


def is_account_admin(who: Principal, owner: Owner) -> bool:
    """An account-admin of the owning account, a consultant of it, or an admin."""
    if who.is_admin:
        return True
    if owner.account_id is None:
        return False
    return (
        owner.account_id == who.account_id and ACCOUNT_ADMIN in who.roles
    ) or who.consults(owner.consultancy_account_id)


def may_update_asset(who: Principal, owner: Owner) -> bool:
    """Update an asset or add child assets and sensors to it: any member."""
    return is_member(who, owner)


def may_delete_asset(who: Principal, owner: Owner) -> bool:
    """Delete an asset: account-admins."""
    return is_account_admin(who, owner)


def may_create_top_level_asset(who: Principal, account_id: int | None) -> bool:
    """A top-level asset in an account needs account-admin rights; public: admin."""
    if account_id is None:
        return who.is_admin
    return who.is_admin or (account_id == who.account_id and ACCOUNT_ADMIN in who.roles)


def may_post_data(who: Principal, owner: Owner) -> bool:
    """Post data to a sensor: any member."""
    return is_member(who, owner)


def may_update_sensor(who: Principal, owner: Owner) -> bool:
    """Update or delete a sensor, or delete its data: account-admins."""
    return is_account_admin(who, owner)
