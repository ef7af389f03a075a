from __future__ import annotations

from fastapi import status

from treu.api.deps import DB, Admin, AnyKey
from treu.api.problems import PROBLEM_RESPONSES, Problem
from treu.programmes.schemas import ProgrammeCreate, ProgrammeOut
from treu.programmes.service import programmes
from treu.web.routing import Router

router = Router(prefix="/v1/programmes", tags=["programmes"], responses=PROBLEM_RESPONSES)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ProgrammeOut,
    responses={409: {"model": Problem, "description": "Slug taken"}},
)
def create_programme(data: ProgrammeCreate, db: DB, _key: Admin) -> ProgrammeOut:
    """Create a loyalty programme (admin scope)."""
    with db.unit_of_work() as session:
        return programmes.out(programmes.create(session, data=data))


@router.get("", response_model=list[ProgrammeOut])
def list_programmes(db: DB, _key: AnyKey) -> list[ProgrammeOut]:
    with db.unit_of_work(write=False) as session:
        return [programmes.out(p) for p in programmes.all(session)]


@router.get(
    "/{programme}",
    response_model=ProgrammeOut,
    responses={404: {"model": Problem, "description": "No such programme"}},
)
def get_programme(programme: str, db: DB, _key: AnyKey) -> ProgrammeOut:
    """By id or slug."""
    with db.unit_of_work(write=False) as session:
        return programmes.out(programmes.get(session, programme))
