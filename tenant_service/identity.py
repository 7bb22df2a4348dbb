"""Verified identities kept while valid, and the principal and roles behind them."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from contract.identity import LEEWAY_S, Identity, verify_identity


class VerifiedIdentities:
    """Assertions already verified, until they expire.

    The gateway reuses one assertion per caller for a while (gateway/identity.py),
    so a busy caller's requests carry the same signed string: its signature and
    claims need checking once, not on every request.
    """

    def __init__(self, max_entries: int = 50_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[tuple[str, str, str], Identity] = {}

    def verify(self, token: str, *, secret: str, tenant: str) -> Identity:
        """Like verify_identity, remembering the answer while it is valid."""
        key = (token, tenant, secret)
        known = self._entries.get(key)
        if known is not None:
            if known.expires_at + LEEWAY_S >= time.time():
                return known
            del self._entries[key]
        identity = verify_identity(token, secret=secret, tenant=tenant)
        if len(self._entries) >= self.max_entries:
            now = time.time()
            self._entries = {
                k: v for k, v in self._entries.items() if v.expires_at + LEEWAY_S >= now
            }
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[key] = identity
        return identity


ADMIN: Final = "admin"
ADMIN_READER: Final = "admin-reader"
ACCOUNT_ADMIN: Final = "account-admin"
CONSULTANT: Final = "consultant"
ADMIN_ROLES: Final = frozenset({ADMIN, ADMIN_READER})


@dataclass(frozen=True, slots=True)
class Principal:
    """The user behind a request, as the database knows them right now."""

    user_id: int
    account_id: int
    roles: frozenset[str]
    username: str | None = None  # for the audit log

    @property
    def is_admin(self) -> bool:
        """May do everything."""
        return ADMIN in self.roles

    @property
    def reads_all(self) -> bool:
        """May read everything (admin or admin-reader)."""
        return bool(ADMIN_ROLES & self.roles)

    def consults(self, consultancy_account_id: int | None) -> bool:
        """Whether this is a consultant of the given consultancy account."""
        return (
            consultancy_account_id is not None
            and consultancy_account_id == self.account_id
            and CONSULTANT in self.roles
        )

    def may_read_account(
        self, account_id: int, consultancy_account_id: int | None
    ) -> bool:
        """Members, consultants of its consultancy and admin(-reader)s read it."""
        return (
            self.reads_all
            or account_id == self.account_id
            or self.consults(consultancy_account_id)
        )

    def may_update_user(
        self, user_id: int, account_id: int, consultancy_account_id: int | None
    ) -> bool:
        """The user, account-admins of their account, consultants and admins."""
        return (
            self.is_admin
            or user_id == self.user_id
            or (account_id == self.account_id and ACCOUNT_ADMIN in self.roles)
            or self.consults(consultancy_account_id)
        )

    def may_create_user_in(
        self, account_id: int, consultancy_account_id: int | None
    ) -> bool:
        """FlexMeasures' create-children on an account: admins, its
        account-admins and consultants of its consultancy."""
        return (
            self.is_admin
            or (account_id == self.account_id and ACCOUNT_ADMIN in self.roles)
            or self.consults(consultancy_account_id)
        )

    def outranks(self, role_names: Iterable[str]) -> bool:
        """Whether this user holds every one of these roles (admins: any roles).

        Nobody changes, deactivates or resets another user who holds a role
        they do not hold themselves: an account-admin cannot take over an admin
        of their account, nor a consultant an account-admin of a client.
        """
        return self.is_admin or self.roles.issuperset(role_names)

    def may_edit_roles(self, account_id: int) -> bool:
        """Admins, and account-admins within their own account."""
        return self.is_admin or (
            account_id == self.account_id and ACCOUNT_ADMIN in self.roles
        )
