"""Auditors' review of a flag as a state machine, with a timeline of who did what.

    open ──assign──▶ assigned ──confirm──▶ confirmed
                        │ ├─────dismiss──▶ dismissed
                        │ └────escalate──▶ escalated ──confirm/dismiss──▶ confirmed / dismissed

``assign`` gives the case to an auditor (again, to hand it on: from assigned or escalated);
``comment`` is allowed in every state and changes none. Confirmed and dismissed are final for
auditors; a scan that finds new evidence for a dismissed flag reopens it (anomaly.flags.persist),
and the next action records that reopening in the timeline first, so the timeline always accounts
for the flag's state.

Confirm, dismiss and escalate are verdicts: they go through anomaly.flags.record_verdict, so
detectors' measured precision and the ranking keep learning from them. Every action is one
FlagEvent row, in the caller's transaction. Anything the machine does not allow is refused with
IllegalTransition, naming the state and the action.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from anomaly.flags import UnknownFlag, record_verdict
from anomaly.models import Flag, FlagEvent
from stock.errors import DawaError, InvalidEntry
from stock.models import User

ACTIONS = ("assign", "confirm", "dismiss", "escalate", "comment")
"""What a person may do to a flag ("reopen" is recorded for the scan, never asked for)."""

TRANSITIONS: dict[tuple[str, str], str] = {
    ("open", "assign"): "assigned",
    ("assigned", "assign"): "assigned",
    ("escalated", "assign"): "escalated",
    ("assigned", "confirm"): "confirmed",
    ("assigned", "dismiss"): "dismissed",
    ("assigned", "escalate"): "escalated",
    ("escalated", "confirm"): "confirmed",
    ("escalated", "dismiss"): "dismissed",
}
"""(state, action) -> next state. ``comment`` is allowed in every state and keeps it."""

VERDICT_OF = {"confirm": "confirmed", "dismiss": "dismissed", "escalate": "escalated"}
REVIEWER_ROLES = ("auditor", "admin")
"""Who may be given a case."""
COMMENT_MAX = 4000


NEEDS_A_REASON = ("dismiss", "escalate")
"""Verdicts that must say why: a dismissal trains the ranking away from a finding, and an
escalation hands a case to someone who needs to know what was seen."""


class CommentRequired(InvalidEntry):
    """A dismissal or an escalation without a comment."""

    def __init__(self, action: str):
        super().__init__(f"say why you {action} this flag: a comment is required", field="comment")
        self.action = action


class IllegalTransition(DawaError):
    """The action is not allowed in the flag's current state."""

    field = "action"

    def __init__(self, state: str, action: str):
        allowed = allowed_actions(state)
        super().__init__(f"cannot {action} a flag that is {state}; allowed when {state}: {', '.join(allowed)}")
        self.state = state
        self.action = action


def allowed_actions(state: str) -> list[str]:
    """The actions a flag in ``state`` accepts, in ACTIONS order."""
    return [a for a in ACTIONS if a == "comment" or (state, a) in TRANSITIONS]


def can_be_assigned(user: User | None) -> bool:
    return user is not None and user.active and user.role in REVIEWER_ROLES


@dataclass(frozen=True)
class TimelineItem:
    at: datetime
    by: str
    action: str
    from_state: str
    to_state: str
    comment: str | None
    assignee: str | None
    recorded: bool = True  # False: a reopening by the scan not yet written down (see timeline)


def _last_event(session: Session, flag_id: str) -> FlagEvent | None:
    return session.scalars(select(FlagEvent).where(FlagEvent.flag_id == flag_id)
                           .order_by(FlagEvent.id.desc()).limit(1)).first()


def _reopened(flag: Flag, last: FlagEvent | None) -> bool:
    """The scan moved the flag since the last recorded step (a dismissed flag reopened)."""
    return last is not None and last.to_state != flag.status


def act(session: Session, flag_id: str, action: str, *, by: str, now: datetime, comment: str | None = None,
        assignee: str | None = None) -> FlagEvent:
    """Apply ``action`` to the flag, as ``by``, and append it to the timeline. The caller commits."""
    if action not in ACTIONS:
        raise InvalidEntry(f"action {action!r} is not one of {', '.join(ACTIONS)}", field="action")
    if not by:
        raise InvalidEntry("an action needs the user who took it", field="by")
    comment = (comment or "").strip() or None
    if comment is not None and len(comment) > COMMENT_MAX:
        raise InvalidEntry(f"the comment is {len(comment)} characters; at most {COMMENT_MAX}", field="comment")
    flag = session.get(Flag, flag_id, with_for_update=True)
    if flag is None:
        raise UnknownFlag(f"no flag {flag_id!r}")
    last = _last_event(session, flag_id)
    if _reopened(flag, last):
        session.add(FlagEvent(flag_id=flag_id, at=flag.updated_at, by="scan", action="reopen",
                              from_state=last.to_state, to_state=flag.status,
                              comment="new evidence found by a scan"))
    state = flag.status
    if action == "comment":
        if comment is None:
            raise InvalidEntry("write the comment", field="comment")
        to_state = state
    else:
        to_state = TRANSITIONS.get((state, action))
        if to_state is None:
            raise IllegalTransition(state, action)
        if action in NEEDS_A_REASON and comment is None:
            raise CommentRequired(action)
    if action == "assign":
        assignee = (assignee or "").strip()
        if not assignee:
            raise InvalidEntry("name the auditor to assign the flag to", field="assignee")
        person = session.scalars(select(User).where(User.username == assignee)).first()
        if not can_be_assigned(person):
            raise InvalidEntry(f"{assignee!r} is not an active auditor or admin", field="assignee")
        flag.assignee = assignee
        flag.status = to_state
        flag.updated_at = now
    elif action in VERDICT_OF:
        record_verdict(session, flag_id, VERDICT_OF[action], by=by, comment=comment, now=now)
        assignee = None
    else:
        assignee = None
    event = FlagEvent(flag_id=flag_id, at=now, by=by, action=action, from_state=state, to_state=to_state,
                      comment=comment, assignee=assignee if action == "assign" else None)
    session.add(event)
    session.flush()
    return event


def timeline(session: Session, flag_id: str) -> list[TimelineItem]:
    """The flag's steps, oldest first; a reopening by the scan since the last step is shown too."""
    flag = session.get(Flag, flag_id)
    if flag is None:
        raise UnknownFlag(f"no flag {flag_id!r}")
    events = list(session.scalars(select(FlagEvent).where(FlagEvent.flag_id == flag_id).order_by(FlagEvent.id)))
    items = [TimelineItem(e.at, e.by, e.action, e.from_state, e.to_state, e.comment, e.assignee) for e in events]
    if _reopened(flag, events[-1] if events else None):
        items.append(TimelineItem(flag.updated_at, "scan", "reopen", events[-1].to_state, flag.status,
                                  "new evidence found by a scan", None, recorded=False))
    return items


__all__ = ["ACTIONS", "TRANSITIONS", "IllegalTransition", "allowed_actions", "act", "timeline", "TimelineItem",
           "can_be_assigned", "REVIEWER_ROLES"]
