"""An audit record names a patient by pseudonym under the key it is given, or the key of the
request's app: a record made outside a request (a command, a job) is handed the key, never left to
find one in the process's settings."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from stock.db import session_factory
from stock.pseudonyms import pseudonym
from web import audit
from web.models import AuditRecord

KEY = "audit-test-patient-key"


def test_a_patient_named_outside_a_request_is_written_under_the_given_key(engine):
    with session_factory(engine)() as s:
        audit.record(s, None, "patient_history_read", "patient", "LY0000000001", {"card": "LY0000000002", "rows": 3},
                     patient_key=KEY)
        s.commit()
        row = s.scalars(select(AuditRecord)).one()
    assert row.object_id == pseudonym("LY0000000001", KEY)
    assert "LY0000000002" not in row.detail and pseudonym("LY0000000002", KEY) in row.detail


def test_without_a_key_a_record_naming_a_patient_is_refused_and_nothing_is_written(engine):
    with session_factory(engine)() as s:
        with pytest.raises(ValueError, match="patient key"):
            audit.record(s, None, "patient_history_read", "patient", "LY0000000001")
        audit.record(s, None, "login", "user", "someone")  # no patient: no key needed
        s.commit()
        assert s.scalars(select(AuditRecord.action)).all() == ["login"]
