"""Staff accounts (admins only): who may do what, and when they last signed in."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response

from treu.kit.text import N_
from treu.staff.roles import PERMISSIONS, Role
from treu.staff.service import staff as staff_accounts
from treu.web.admin import router
from treu.web.admin.context import Staff, database, need
from treu.web.nav import ADMIN
from treu.web.render import render

ADMIN.link("/admin/staff", N_("Staff"), order=120, permission="staff.manage")


@router.get("/staff")
def staff_page(
    request: Request, staff: Annotated[Staff, Depends(need("staff.manage"))]
) -> Response:
    with database(request).unit_of_work(write=False) as session:
        users = staff_accounts.list(session)
    return render(
        request,
        "admin/staff.html",
        staff=staff,
        users=users,
        roles=[(role.value, sorted(PERMISSIONS[role])) for role in Role],
    )
