"""The auditors' workflow on flags: the state machine, its timeline, and verdicts feeding precision,
on SQLite and PostgreSQL over the small sample imported and scanned."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from anomaly import scan
from anomaly.export import query
from anomaly.flags import UnknownFlag, detector_precision
from anomaly.models import Flag, FlagEvent, Verdict
from anomaly.workflow import ACTIONS, TRANSITIONS, CommentRequired, IllegalTransition, act, allowed_actions, timeline
from stock.errors import InvalidEntry
from stock.importer import import_dataset
from stock.models import User
from sample_data import SMALL

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def flags(session):
    import_dataset(session, SMALL)
    for name, role in (("aud1", "auditor"), ("aud2", "auditor"), ("pharm", "pharmacist")):
        session.add(User(username=name, role=role, active=True, created_at=T0))
    session.add(User(username="gone", role="auditor", active=False, created_at=T0))
    session.commit()
    scan.run(session)
    session.commit()
    rows = query(session)
    assert len(rows) >= 5
    return [r.flag_id for r in rows]


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_full_path_and_timeline(session, flags):
    fid = flags[0]
    act(session, fid, "assign", by="aud1", assignee="aud2", now=at(1))
    act(session, fid, "comment", by="aud2", comment="looking at the patient's history", now=at(2))
    act(session, fid, "escalate", by="aud2", comment="needs the inspectorate", now=at(3))
    act(session, fid, "assign", by="aud2", assignee="aud1", now=at(4))
    act(session, fid, "confirm", by="aud1", comment="diverted", now=at(5))
    session.commit()
    flag = session.get(Flag, fid)
    assert flag.status == "confirmed" and flag.assignee == "aud1"
    steps = [(t.action, t.by, t.from_state, t.to_state, t.assignee, t.comment) for t in timeline(session, fid)]
    assert steps == [
        ("assign", "aud1", "open", "assigned", "aud2", None),
        ("comment", "aud2", "assigned", "assigned", None, "looking at the patient's history"),
        ("escalate", "aud2", "assigned", "escalated", None, "needs the inspectorate"),
        ("assign", "aud2", "escalated", "escalated", "aud1", None),
        ("confirm", "aud1", "escalated", "confirmed", None, "diverted"),
    ]
    assert [t.at for t in timeline(session, fid)] == [at(i) for i in range(1, 6)]
    # The verdicts went through anomaly.flags: escalated, then confirmed, the latest counting.
    verdicts = session.execute(select(Verdict.verdict, Verdict.decided_by).where(Verdict.flag_id == fid)
                               .order_by(Verdict.id)).all()
    assert verdicts == [("escalated", "aud2"), ("confirmed", "aud1")]


@pytest.mark.parametrize("state_path,action", [
    ((), "confirm"), ((), "dismiss"), ((), "escalate"),
    (("assign", "confirm"), "dismiss"), (("assign", "confirm"), "assign"), (("assign", "confirm"), "escalate"),
    (("assign", "dismiss"), "confirm"), (("assign", "escalate"), "escalate"),
])
def test_illegal_transitions_are_refused_naming_state_and_action(session, flags, state_path, action):
    fid = flags[1]
    for i, step in enumerate(state_path):
        act(session, fid, step, by="aud1", assignee="aud1" if step == "assign" else None, comment="seen", now=at(i))
    session.commit()
    state = session.get(Flag, fid).status
    before = session.scalar(select(func.count()).select_from(FlagEvent))
    with pytest.raises(IllegalTransition) as exc:
        act(session, fid, action, by="aud1", assignee="aud1", now=at(50))
    assert exc.value.field == "action"
    assert f"cannot {action} a flag that is {state}" in exc.value.message
    session.rollback()
    assert session.get(Flag, fid).status == state
    assert session.scalar(select(func.count()).select_from(FlagEvent)) == before


def test_every_state_and_action_follows_the_table():
    for state in ("open", "assigned", "confirmed", "dismissed", "escalated"):
        assert "comment" in allowed_actions(state)
        for action in ACTIONS:
            if action != "comment":
                assert (action in allowed_actions(state)) == ((state, action) in TRANSITIONS)
    assert allowed_actions("confirmed") == ["comment"] == allowed_actions("dismissed")


def test_bad_input_names_the_field(session, flags):
    fid = flags[2]
    cases = [(dict(action="approve"), "action"), (dict(action="assign"), "assignee"),
             (dict(action="assign", assignee="nobody"), "assignee"), (dict(action="assign", assignee="pharm"), "assignee"),
             (dict(action="assign", assignee="gone"), "assignee"), (dict(action="comment"), "comment"),
             (dict(action="comment", comment="x" * 5000), "comment")]
    for kwargs, field in cases:
        with pytest.raises(InvalidEntry) as exc:
            act(session, fid, by="aud1", now=at(1), **kwargs)
        assert exc.value.field == field, kwargs
    with pytest.raises(UnknownFlag):
        act(session, "F-none", "comment", by="aud1", comment="x", now=at(1))
    session.rollback()
    assert session.get(Flag, fid).status == "open"
    assert timeline(session, fid) == []


def test_verdicts_update_precision_and_ranking(session, flags):
    rows = query(session)
    detector = rows[0].detector.split(",")[0]
    mine = [r.flag_id for r in rows if detector in r.detector.split(",")]
    assert detector not in detector_precision(session)
    for i, fid in enumerate(mine):
        act(session, fid, "assign", by="aud1", assignee="aud1", now=at(i))
        act(session, fid, "dismiss", by="aud1", comment="false positive", now=at(i))
    session.commit()
    precision, confirmed, dismissed = detector_precision(session)[detector]
    assert (confirmed, dismissed) == (0, len(mine)) and precision < 0.7
    flag = session.get(Flag, mine[0])
    # A case several detectors raised is weighed by the most precise of them.
    weight = max(detector_precision(session).get(d, (0.7,))[0] for d in flag.detectors.split(","))
    assert flag.rank_score == pytest.approx(round(flag.score * weight, 6), abs=1e-6)


def test_reopening_by_a_scan_enters_the_timeline(session, flags):
    fid = flags[3]
    act(session, fid, "assign", by="aud1", assignee="aud1", now=at(1))
    act(session, fid, "dismiss", by="aud1", comment="a known referral", now=at(2))
    session.commit()
    # What anomaly.flags.persist does when a scan finds new evidence for a dismissed flag.
    flag = session.get(Flag, fid)
    flag.status, flag.updated_at = "open", at(10)
    session.commit()
    shown = timeline(session, fid)
    assert [(t.action, t.from_state, t.to_state, t.recorded) for t in shown][-1] == ("reopen", "dismissed", "open", False)
    act(session, fid, "assign", by="aud2", assignee="aud2", now=at(11))
    session.commit()
    steps = [(t.action, t.by, t.from_state, t.to_state, t.recorded) for t in timeline(session, fid)]
    assert steps == [("assign", "aud1", "open", "assigned", True), ("dismiss", "aud1", "assigned", "dismissed", True),
                     ("reopen", "scan", "dismissed", "open", True), ("assign", "aud2", "open", "assigned", True)]


@pytest.mark.parametrize("action", ["dismiss", "escalate"])
@pytest.mark.parametrize("comment", [None, "", "   "])
def test_dismissing_or_escalating_needs_a_comment(session, flags, action, comment):
    fid = flags[2]
    act(session, fid, "assign", by="aud1", assignee="aud1", now=at(1))
    session.commit()
    before = session.scalar(select(func.count()).select_from(FlagEvent))
    with pytest.raises(CommentRequired) as exc:
        act(session, fid, action, by="aud1", comment=comment, now=at(2))
    assert exc.value.field == "comment" and exc.value.action == action
    assert f"say why you {action} this flag" in exc.value.message
    session.rollback()
    assert session.get(Flag, fid).status == "assigned"
    assert session.scalar(select(func.count()).select_from(FlagEvent)) == before
    assert session.scalars(select(Verdict).where(Verdict.flag_id == fid)).first() is None
    # Confirming needs none: the evidence speaks for itself.
    act(session, fid, "confirm", by="aud1", now=at(3))
    assert session.get(Flag, fid).status == "confirmed"
