"""Bad input that once behaved differently on the two databases is refused the same way, naming
file, line and field: a NUL, an over-long field, a date outside the sane range."""

from __future__ import annotations

import pytest

from tests.stock.test_importer import bad_ledger, problems_of

ROWS = [
    ("Z,2026-03-09T10:00:00Z,WH-C,loss,MOR10,L1,,1,,,,dam\x00aged,u,,", "ledger.csv:5: reason:"),
    ("Z,2026-03-09T10:00:00Z,WH-C,receipt,MOR10,L1,,1,,,,,u,GRN\x007,", "ledger.csv:5: document_number:"),
    ("Z,2026-03-09T10:00:00Z,WH-C,receipt,MOR10," + "L" * 65 + ",2028-01-31,1,,,,,u,,", "ledger.csv:5: lot_number:"),
    ("Z,2026-03-09T10:00:00Z,WH-C,receipt,MOR10,L1,,1,,,,,u," + "G" * 65 + ",", "ledger.csv:5: document_number:"),
    ("Z,2026-03-09T10:00:00Z,WH-C,loss,MOR10,L1,,1,,,," + "r" * 5000 + ",u,,", "ledger.csv:5: reason:"),
    ("Z,0001-01-01T10:00:00Z,WH-C,receipt,MOR10,L1,,1,,,,,u,,", "ledger.csv:5: occurred_at:"),
    ("Z,9999-12-31T10:00:00Z,WH-C,receipt,MOR10,L1,,1,,,,,u,,", "ledger.csv:5: occurred_at:"),
]


@pytest.mark.parametrize("row,expected", ROWS, ids=range(len(ROWS)))
def test_refused_alike_on_both_databases(session, tmp_path, row, expected):
    problems = problems_of(session, bad_ledger(tmp_path, row))
    assert any(p.startswith(expected) for p in problems), problems
