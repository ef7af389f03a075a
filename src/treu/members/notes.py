"""Staff notes on a member (``member_notes``): append-only, newest first."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from treu.errors import Invalid
from treu.kit.time import utc_now
from treu.members.models import MemberNote

MAX_NOTE = 2000


class NoteService:
    def add(
        self,
        session: Session,
        *,
        member_id: uuid.UUID,
        author: str,
        text: str,
        now: datetime | None = None,
    ) -> MemberNote:
        body = text.strip()
        if not body:
            raise Invalid("a note needs some text", errors=[{"field": "text", "message": "empty"}])
        if len(body) > MAX_NOTE:
            raise Invalid(f"a note has at most {MAX_NOTE} characters")
        note = MemberNote(
            member_id=member_id, author=author, text=body, created_at=now or utc_now()
        )
        session.add(note)
        session.flush()
        return note

    def recent(
        self, session: Session, member_id: uuid.UUID, *, limit: int = 20
    ) -> list[MemberNote]:
        return list(
            session.scalars(
                select(MemberNote)
                .where(MemberNote.member_id == member_id)
                .order_by(MemberNote.created_at.desc(), MemberNote.id.desc())
                .limit(limit)
            )
        )


notes = NoteService()
