from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Body, Depends, Query, status
from sqlalchemy.orm import Session

from treu.api.deps import DB, Admin, MembersRead, RequestedLang, require
from treu.api.problems import PROBLEM_RESPONSES, Problem
from treu.auth.service import Principal
from treu.challenges.models import Challenge, ChallengeStatus
from treu.challenges.schemas import (
    EXAMPLE_CATEGORIES,
    EXAMPLE_CHALLENGE,
    EXAMPLE_REVIEWS,
    ChallengeList,
    ChallengeOut,
    MemberChallengesOut,
)
from treu.challenges.service import challenges, parse_spec
from treu.kit.lang import member_language
from treu.members.service import members
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.web.routing import Router

router = Router(tags=["challenges"], responses=PROBLEM_RESPONSES)
ChallengesRead = Annotated[Principal, Depends(require("admin|members:read"))]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such challenge"}
}
INVALID: dict[int | str, dict[str, Any]] = {
    422: {
        "model": Problem,
        "description": "Invalid challenge (expressions name line, column and offset), "
        "unknown trigger",
    }
}
STATUS: dict[int | str, dict[str, Any]] = {
    409: {"model": Problem, "description": "Not possible in the challenge's status"}
}


def _out(
    session: Session, challenge: Challenge, programme: Programme, completions: int | None = None
) -> ChallengeOut:
    if completions is None:
        completions = challenges.completion_counts(session, [challenge.id]).get(challenge.id, 0)
    return ChallengeOut(
        id=challenge.id,
        programme=programme.slug,
        code=challenge.code,
        status=challenge.status,
        spec=challenge.spec,
        revision=challenge.revision,
        locked=challenge.activated_at is not None,
        completions=completions,
        activated_at=challenge.activated_at,
        paused_at=challenge.paused_at,
        ended_at=challenge.ended_at,
        created_at=challenge.created_at,
        updated_at=challenge.updated_at,
    )


@router.get("/v1/programmes/{programme}/challenges", response_model=ChallengeList)
def list_challenges(
    programme: str,
    db: DB,
    _key: ChallengesRead,
    challenge_status: Annotated[
        ChallengeStatus | None, Query(alias="status", description="Only challenges in this status")
    ] = None,
) -> ChallengeList:
    """The programme's challenges (slug or id), oldest first."""
    with db.unit_of_work(write=False) as session:
        found = programmes.get(session, programme)
        items = challenges.all(
            session,
            programme_id=found.id,
            status=challenge_status.value if challenge_status is not None else None,
        )
        counts = challenges.completion_counts(session, [c.id for c in items])
        return ChallengeList(items=[_out(session, c, found, counts.get(c.id, 0)) for c in items])


@router.post(
    "/v1/programmes/{programme}/challenges",
    status_code=status.HTTP_201_CREATED,
    response_model=ChallengeOut,
    responses={
        **INVALID,
        409: {"model": Problem, "description": "The code is taken (challenge_exists)"},
    },
)
def create_challenge(
    programme: str,
    data: Annotated[
        dict[str, Any],
        Body(
            description="A challenge specification (see docs/challenges.md)",
            openapi_examples={
                "count": {"summary": "3 purchases in May", "value": EXAMPLE_CHALLENGE},
                "distinct": {"summary": "Buy from 3 categories", "value": EXAMPLE_CATEGORIES},
                "reviews": {"summary": "Write 2 reviews a week", "value": EXAMPLE_REVIEWS},
            },
        ),
    ],
    db: DB,
    key: Admin,
) -> ChallengeOut:
    """Save a new challenge as a **draft** (it counts nothing until activated). A
    condition or goal value with a syntax or type error is refused with its line and
    column."""
    spec = parse_spec(data)
    with db.unit_of_work() as session:
        found = programmes.get(session, programme)
        challenge = challenges.create(session, programme=found, spec=spec, actor=key.actor)
        return _out(session, challenge, found)


@router.get("/v1/challenges/{challenge_id}", response_model=ChallengeOut, responses=NOT_FOUND)
def get_challenge(challenge_id: str, db: DB, _key: ChallengesRead) -> ChallengeOut:
    with db.unit_of_work(write=False) as session:
        challenge = challenges.get(session, challenge_id)
        return _out(session, challenge, programmes.get(session, challenge.programme_id))


@router.patch(
    "/v1/challenges/{challenge_id}",
    response_model=ChallengeOut,
    responses={
        **NOT_FOUND,
        **INVALID,
        409: {
            "model": Problem,
            "description": "challenge_locked: what counts cannot change after activation; "
            "challenge_status: the challenge has ended; challenge_exists: code taken",
        },
    },
)
def patch_challenge(
    challenge_id: str,
    changes: Annotated[
        dict[str, Any],
        Body(
            description="Fields to replace (`null` clears an optional one)",
            openapi_examples={
                "reward": {"summary": "More points", "value": {"reward": {"points": 500}}}
            },
        ),
    ],
    db: DB,
    key: Admin,
) -> ChallengeOut:
    """Change a challenge: the fields you send replace the current ones. Once the
    challenge was activated only `name`, `description` and `reward` may change
    (**409** `challenge_locked` otherwise)."""
    with db.unit_of_work() as session:
        challenge = challenges.get(session, challenge_id)
        spec = parse_spec({**challenge.spec, **changes})
        challenge = challenges.update(session, challenge, spec=spec, actor=key.actor)
        return _out(session, challenge, programmes.get(session, challenge.programme_id))


@router.post(
    "/v1/challenges/{challenge_id}/activate",
    response_model=ChallengeOut,
    responses={
        **NOT_FOUND,
        **STATUS,
        422: {"model": Problem, "description": "The window has ended (challenge_window_over)"},
    },
)
def activate_challenge(challenge_id: str, db: DB, key: Admin) -> ChallengeOut:
    """Start counting events (or resume a paused challenge): at once in this server
    process, within 5 seconds in the others. From now on what counts is frozen."""
    with db.unit_of_work() as session:
        challenge = challenges.activate(
            session, challenges.get(session, challenge_id), actor=key.actor
        )
        return _out(session, challenge, programmes.get(session, challenge.programme_id))


@router.post(
    "/v1/challenges/{challenge_id}/pause",
    response_model=ChallengeOut,
    responses={**NOT_FOUND, **STATUS},
)
def pause_challenge(challenge_id: str, db: DB, key: Admin) -> ChallengeOut:
    """Stop counting until activated again; progress made so far is kept."""
    with db.unit_of_work() as session:
        challenge = challenges.pause(
            session, challenges.get(session, challenge_id), actor=key.actor
        )
        return _out(session, challenge, programmes.get(session, challenge.programme_id))


@router.post("/v1/challenges/{challenge_id}/end", response_model=ChallengeOut, responses=NOT_FOUND)
def end_challenge(challenge_id: str, db: DB, key: Admin) -> ChallengeOut:
    """Close the challenge for good; members keep what they completed."""
    with db.unit_of_work() as session:
        challenge = challenges.end(session, challenges.get(session, challenge_id), actor=key.actor)
        return _out(session, challenge, programmes.get(session, challenge.programme_id))


@router.get(
    "/v1/members/{member_id}/challenges",
    response_model=MemberChallengesOut,
    responses={404: {"model": Problem, "description": "No such member"}},
)
def member_challenges(
    member_id: uuid.UUID,
    db: DB,
    _key: MembersRead,
    requested: RequestedLang,
) -> MemberChallengesOut:
    """The active challenges open now with this member's progress in the current period
    (current/target, percent, when the period ends, completions, reward), and the
    challenges the member completed, newest first."""
    with db.unit_of_work(write=False) as session:
        member = members.get(session, member_id)
        lang = member_language(requested, member.language)
        return challenges.overview(session, member=member, lang=lang)
