from __future__ import annotations

from treu.errors import Conflict, Invalid, NotFound


class SegmentNotFound(NotFound):
    code = "segment_not_found"
    title = "Segment not found"


class SegmentExists(Conflict):
    code = "segment_exists"
    title = "A segment with this slug exists"


class InvalidSegment(Invalid):
    code = "invalid_segment"
    title = "Invalid segment"
