from __future__ import annotations

from treu.errors import Conflict, Invalid, NotFound


class ChallengeNotFound(NotFound):
    code = "challenge_not_found"
    title = "Challenge not found"


class ChallengeExists(Conflict):
    code = "challenge_exists"
    title = "A challenge with this code exists"


class ChallengeLocked(Conflict):
    """The goal, trigger, conditions, window or completion cap of an activated challenge
    would change: progress already made would mean something else."""

    code = "challenge_locked"
    title = "The challenge was activated: what counts cannot change"


class ChallengeStatusConflict(Conflict):
    code = "challenge_status"
    title = "Not possible in the challenge's status"


class ChallengeWindowOver(Invalid):
    code = "challenge_window_over"
    title = "The challenge's window has ended"
