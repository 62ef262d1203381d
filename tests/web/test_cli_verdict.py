"""`dawa flags verdict` goes through the review state machine (anomaly.workflow): each step is a
timeline row, and what the machine refuses the command refuses. SQLite file, as the CLI runs."""

from __future__ import annotations

from anomaly import scan
from anomaly.export import query
from anomaly.models import Flag
from anomaly.workflow import timeline
from stock.ledger import post
from stock.models import User
from tests.stock.builders import T0, build_world, entry
from tests.web.test_cli import dawa  # noqa: F401 - fixture


def test_verdict_through_the_state_machine_with_a_timeline(dawa):  # noqa: F811
    assert dawa("init", "--env-file", ".env").exit_code == 0
    with dawa.session() as s:
        build_world(s)
        s.add(User(username="aud1", role="auditor", active=True, created_at=T0))
        post(s, [entry("receipt", 200), entry("dispense", 90, prescription_id="RX1")])
        s.commit()
        scan.run(s)
        s.commit()
        fid = query(s)[0].flag_id
    r = dawa("flags", "verdict", fid, "confirmed", "--by", "aud1", "--comment", "diverted")
    assert r.exit_code == 0, r.err
    with dawa.session() as s:
        steps = [(t.action, t.by, t.from_state, t.to_state, t.comment) for t in timeline(s, fid)]
        assert steps == [("assign", "aud1", "open", "assigned", None),
                         ("confirm", "aud1", "assigned", "confirmed", "diverted")]
        assert s.get(Flag, fid).status == "confirmed"
    r = dawa("flags", "verdict", fid, "dismissed", "--by", "aud1")
    assert r.exit_code != 0 and "cannot dismiss a flag that is confirmed" in r.err
    r = dawa("flags", "verdict", fid, "maybe", "--by", "aud1")
    assert r.exit_code != 0 and "verdict 'maybe' is not one of confirmed, dismissed, escalated" in r.err
    with dawa.session() as s:
        assert len(timeline(s, fid)) == 2
