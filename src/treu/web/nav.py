"""The navigation bars of the console and the portal, filled by the pages themselves.

A page module adds its link where it adds its route (``ADMIN.link("/admin/rules",
N_("Rules"), order=30, permission="programme.read")``), so adding a page is one small
file plus a template: no list elsewhere to keep in step. Labels are English message ids,
translated when the bar is drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Link:
    path: str
    label: str
    order: int
    permission: str | None = None


@dataclass
class Nav:
    links: list[Link] = field(default_factory=list)

    def link(self, path: str, label: str, *, order: int, permission: str | None = None) -> None:
        if any(existing.path == path for existing in self.links):
            raise ValueError(f"{path} is in the navigation twice")
        self.links.append(Link(path, label, order, permission))
        self.links.sort(key=lambda item: item.order)

    def visible(self, may: Callable[[str], bool] | None = None) -> list[Link]:
        """The links a user may follow (``may(permission)``; every link without one)."""
        return [
            item
            for item in self.links
            if item.permission is None or (may is not None and may(item.permission))
        ]


ADMIN = Nav()
PORTAL = Nav()
