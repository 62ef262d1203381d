"""Flags leave Dawa naming patients by pseudonym: `dawa scan` writes reasons that way, `dawa flags
list` and `dawa flags export` show them that way, and the cards in clear come out only for a
national auditor or admin asked for by name, recorded in the audit trail. SQLite file, as the CLI runs."""

from __future__ import annotations

import csv
import io
import json

from sqlalchemy import select

from anomaly.models import Flag, FlagHit
from stock.ledger import post
from stock.pseudonyms import patient_key, pseudonym
from stock.settings import get_settings
from tests.stock.builders import build_world, entry
from tests.web.conftest import PASSWORD, make_settings
from tests.web.test_cli import dawa  # noqa: F401 - fixture
from web.models import AuditRecord

GHOST = "LY0000000099"  # in no patient register
CARD = "LY0000000001"


def _flagged(dawa):  # noqa: F811
    assert dawa("init", "--env-file", ".env").exit_code == 0
    from web.admin.service import create_user

    with dawa.session() as s:
        build_world(s)
        post(s, [entry("receipt", 500), entry("dispense", 5, health_card_id=GHOST),
                 entry("dispense", 5, health_card_id=GHOST), entry("dispense", 90, prescription_id="RX1")])
        for name, role, where in (("chief", "auditor", {}), ("aud_tripoli", "auditor", {"region": "Tripoli"}),
                                  ("pharm", "pharmacist", {"facility": "H1"})):
            create_user(s, name, role, PASSWORD, web=make_settings().web, **where)
        s.commit()
    scanned = dawa("scan")
    assert scanned.exit_code == 0, scanned.err
    get_settings.cache_clear()
    return patient_key(get_settings())


def test_scan_writes_reasons_with_pseudonyms_and_exports_keep_them(dawa):  # noqa: F811
    key = _flagged(dawa)
    with dawa.session() as s:
        flags = s.scalars(select(Flag)).all()
        hits = s.scalars(select(FlagHit)).all()
    ghost = [f for f in flags if f.subject == "patient" and f.subject_id == GHOST]
    assert ghost, [(f.subject, f.subject_id, f.reason) for f in flags]  # the subject keeps the card
    texts = [f.reason for f in flags] + [h.reason for h in hits] + [json.dumps(h.details) for h in hits]
    assert not [t for t in texts if GHOST in t or CARD in t], texts
    assert pseudonym(GHOST, key) in ghost[0].reason
    listed = dawa("flags", "list")
    assert listed.exit_code == 0 and GHOST not in listed.output and CARD not in listed.output
    exported = dawa("flags", "export")
    assert exported.exit_code == 0 and GHOST not in exported.output and CARD not in exported.output
    rows = list(csv.DictReader(io.StringIO(exported.output)))
    assert pseudonym(GHOST, key) in {r["subject_id"] for r in rows}
    with dawa.session() as s:
        assert s.scalars(select(AuditRecord).where(AuditRecord.action == "clear_cards_exported")).all() == []


def test_flags_in_clear_only_for_a_national_reviewer_by_name_and_audited(dawa):  # noqa: F811
    _flagged(dawa)
    for args, why in ((["--clear-cards"], "needs --by"), (["--clear-cards", "--by", "pharm"], "facility pharmacist"),
                      (["--clear-cards", "--by", "aud_tripoli"], "region auditor"),
                      (["--clear-cards", "--by", "ghost"], "no such active user")):
        refused = dawa("flags", "export", *args)
        assert refused.exit_code == 2 and why in refused.err, (args, refused.err)
        assert GHOST not in refused.output
    clear = dawa("flags", "export", "--format", "json", "--clear-cards", "--by", "chief")
    assert clear.exit_code == 0, clear.err
    ghost = [r for r in json.loads(clear.output) if r["subject_id"] == GHOST]
    assert ghost and GHOST in ghost[0]["reason"]
    with dawa.session() as s:
        (record,) = s.scalars(select(AuditRecord).where(AuditRecord.action == "clear_cards_exported")).all()
        assert record.object_id == "flags" and '"clear_cards": true' in record.detail
        assert '"patients": 1' in record.detail or '"patients": 2' in record.detail
        assert GHOST not in (record.detail or "")
