from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from treu.audit.models import AuditEvent


class AuditService:
    def record(
        self,
        session: Session,
        *,
        actor: str,
        action: str,
        subject_type: str,
        subject_id: str,
        programme_id: uuid.UUID | None = None,
        data: dict[str, Any] | None = None,
    ) -> AuditEvent:
        entry = AuditEvent(
            actor=actor,
            action=action,
            subject_type=subject_type,
            subject_id=subject_id,
            programme_id=programme_id,
            data=data or {},
        )
        session.add(entry)
        session.flush()
        return entry


audit = AuditService()
