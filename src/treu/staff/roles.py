"""Roles and what each may do: checked on the server for every page and action.

A role is a set of permissions; a page or action names the one it needs
(``staff.permissions.require(user.role, "rules.publish")``). Nothing is allowed by
default: a permission no role lists is allowed to nobody, and a role added later starts
with nothing.

* ``admin``: everything, staff accounts, API keys and webhooks included.
* ``marketing``: runs the programme — rules, tiers, rewards, challenges, campaigns,
  journeys, templates — and reads members and the dashboard; no API keys, no goodwill.
* ``support``: helps members — member 360, notes, goodwill adjustments, resending; reads
  the programme set-up but changes none of it.
* ``analyst``: reads: dashboard, members, programme set-up, exports. Changes nothing.
"""

from __future__ import annotations

import enum

from treu.errors import Forbidden


class Role(enum.StrEnum):
    admin = "admin"
    marketing = "marketing"
    support = "support"
    analyst = "analyst"


READ = frozenset(
    {
        "dashboard.read",
        "members.read",
        "programme.read",
        "campaigns.read",
        "exports.read",
    }
)
"""What every role may read."""

PERMISSIONS: dict[Role, frozenset[str]] = {
    Role.analyst: READ,
    Role.support: READ
    | {
        "members.note",
        "members.adjust",
        "members.messages",
        "members.update",
    },
    Role.marketing: READ
    | {
        "rules.write",
        "rules.publish",
        "tiers.write",
        "rewards.write",
        "challenges.write",
        "campaigns.write",
        "journeys.write",
        "templates.write",
    },
}
PERMISSIONS[Role.admin] = frozenset().union(*PERMISSIONS.values()) | {
    "staff.manage",
    "apikeys.manage",
    "webhooks.manage",
    "audit.read",
}

KNOWN = PERMISSIONS[Role.admin]
"""Every permission there is (the admin has all)."""


class NotAllowed(Forbidden):
    code = "not_allowed"
    title = "Your role does not allow this"


def allows(role: str | Role, permission: str) -> bool:
    """Whether ``role`` may do ``permission``. An unknown role may do nothing; an
    unknown permission is a bug in the caller, not a refusal."""
    if permission not in KNOWN:
        raise ValueError(f"unknown permission {permission!r}")
    try:
        return permission in PERMISSIONS[Role(role)]
    except ValueError:
        return False


def require(role: str | Role, permission: str) -> None:
    """Raise ``NotAllowed`` (403) unless ``role`` may do ``permission``."""
    if not allows(role, permission):
        raise NotAllowed(f"the {role} role may not do {permission}", permission=permission)
