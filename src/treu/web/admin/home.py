"""The console's start page: find a member by e-mail, phone, card number or external id."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from treu.kit.text import N_
from treu.members.models import Member
from treu.members.service import members
from treu.programmes.models import Programme
from treu.web.admin import router
from treu.web.admin.context import Staff, database, need
from treu.web.admin.member import LABELS
from treu.web.nav import ADMIN
from treu.web.render import render

ADMIN.link("/admin", N_("Members"), order=10, permission="members.read")


@router.get("")
def home(
    request: Request,
    staff: Annotated[Staff, Depends(need("members.read"))],
    q: Annotated[str, Query(max_length=320)] = "",
) -> Response:
    found: list[tuple[Member, str]] = []
    if q.strip():
        with database(request).unit_of_work(write=False) as session:
            hits = members.search(session, identifier=q)
            slugs = dict(
                session.execute(
                    select(Programme.id, Programme.slug).where(
                        Programme.id.in_({m.programme_id for m in hits})
                    )
                ).all()
            )
            found = [(m, slugs[m.programme_id]) for m in hits]
    return render(request, "admin/home.html", staff=staff, q=q, found=found, labels=LABELS)
