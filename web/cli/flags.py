"""``dawa flags list|export|verdict|precision``: review, export and decide flags from a terminal."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer

from stock.db import session_factory
from stock.errors import DawaError
from web.cli import tables as cli_tables
from web.cli.common import ByOpt, ClearCardsOpt, DbOption, _engine, _fail, _patient_key, console, err
from web.cli import language as cli_language
from web.cli.language import t as _t

flags_app = typer.Typer(help="Review, export and decide flags.", no_args_is_help=True,
                        pretty_exceptions_enable=False)


RegionOpt = Annotated[Optional[str], typer.Option(help="Region")]
FacilityOpt = Annotated[Optional[str], typer.Option(help="Facility code")]
DetectorOpt = Annotated[Optional[str], typer.Option(help="Detector name")]
SeverityOpt = Annotated[Optional[str], typer.Option(help="low, medium or high")]
StatusOpt = Annotated[Optional[str], typer.Option(help="open, assigned, confirmed, dismissed or escalated")]


@flags_app.command("list")
def flags_list(db: DbOption = None,
               region: RegionOpt = None,
               facility: FacilityOpt = None,
               detector: DetectorOpt = None,
               severity: SeverityOpt = None,
               status: StatusOpt = None,
               limit: Annotated[int, typer.Option(help="At most this many")] = 20):
    """Flags, most suspicious first, patients by pseudonym."""
    from anomaly.export import contract_rows

    with session_factory(_engine(db), read_only=True)() as s:
        rows = contract_rows(s, key=_patient_key(), region=region, facility=facility, detector=detector,
                             severity=severity, status=status, limit=limit)
    _flag_table(rows, _t(cli_language.MSG_FLAGS_SHOWN, num=len(rows)))


def _flag_table(rows, title: str) -> None:
    from web.cli.tables import flag_table

    flag_table(console, rows, title)


@flags_app.command("export")
def flags_export(db: DbOption = None,
                 fmt: Annotated[str, typer.Option("--format", help="csv or json")] = "csv",
                 out: Annotated[Optional[Path], typer.Option(help="File to write (default: standard output)")] = None,
                 region: RegionOpt = None,
                 facility: FacilityOpt = None,
                 detector: DetectorOpt = None,
                 severity: SeverityOpt = None,
                 status: StatusOpt = None,
                 clear_cards: ClearCardsOpt = False,
                 by: ByOpt = None):
    """Export flags in the data contract's format, most suspicious first, patients by pseudonym
    (with --clear-cards --by USER: by health card, recorded in the audit trail)."""
    from anomaly.export import contract_rows, to_csv, to_json

    if fmt not in ("csv", "json"):
        _fail(f"--format must be csv or json, not {fmt!r}", 2)
    filters = dict(region=region, facility=facility, detector=detector, severity=severity, status=status)
    with session_factory(_engine(db))() as s:
        try:
            if clear_cards:
                from web.clear_exports import clear_card_exporter, record_clear_export

                user = clear_card_exporter(s, by)
                rows = contract_rows(s, key=_patient_key(), clear_cards=True, **filters)
                record_clear_export(s, user, "flags", rows=len(rows),
                                    patients=len({r.subject_id for r in rows if r.subject == "patient"}))
            else:
                rows = contract_rows(s, key=_patient_key(), **filters)
        except DawaError as exc:
            _fail(str(exc), 2)
    body = to_csv(rows) if fmt == "csv" else to_json(rows)
    if out:
        out.write_text(body, encoding="utf-8")
        err.print(f"{len(rows)} flags written to {out}")
    else:
        sys.stdout.write(body)


@flags_app.command("verdict")
def flags_verdict(flag_id: Annotated[str, typer.Argument(help="The flag: its id, or its short id from `flags list`")],
                  verdict: Annotated[str, typer.Argument(help="confirmed, dismissed or escalated")],
                  by: Annotated[str, typer.Option(help="The auditor's user name")],
                  comment: Annotated[Optional[str], typer.Option(help="Why")] = None,
                  db: DbOption = None):
    """Record an auditor's verdict through the review state machine (anomaly.workflow), each step
    on the flag's timeline: an open flag is first assigned to the auditor giving it. A dismissed
    flag is not raised again for the same evidence."""
    from anomaly.models import VERDICTS, Flag
    from anomaly.workflow import VERDICT_OF, act

    action = {v: a for a, v in VERDICT_OF.items()}.get(verdict)
    if action is None:
        _fail(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    with session_factory(_engine(db))() as s:
        try:
            now = datetime.now(timezone.utc)
            flag_id = _flag_id(s, flag_id)
            flag = s.get(Flag, flag_id)
            if flag is not None and flag.status == "open":
                act(s, flag_id, "assign", by=by, assignee=by, now=now)
            act(s, flag_id, action, by=by, comment=comment, now=now)
            s.commit()
        except DawaError as exc:
            _fail(str(exc))
    console.print(f"flag {flag_id}: {verdict}")


def _flag_id(session, given: str) -> str:
    """The flag a command names: its whole id, or (as `dawa flags list` shows them) the start of
    one that no other flag shares."""
    from sqlalchemy import select

    from anomaly.models import Flag

    if len(given) < cli_tables.SHORT_ID or session.get(Flag, given) is not None:
        return given
    found = session.scalars(select(Flag.flag_id).where(Flag.flag_id.startswith(given, autoescape=True))
                            .order_by(Flag.flag_id).limit(2)).all()
    if len(found) > 1:
        _fail(f"{given!r} is the start of several flags' ids ({found[0]}, {found[1]}, ...): give more of it", 2)
    return found[0] if found else given


@flags_app.command("precision")
def flags_precision(db: DbOption = None):
    """Each detector's precision, measured from auditors' verdicts."""
    from anomaly.flags import PRIOR_CONFIRMED, PRIOR_TOTAL, detector_precision

    with session_factory(_engine(db), read_only=True)() as s:
        measured = detector_precision(s)
    table = cli_tables.table("Detector precision from verdicts", [
        ("detector", "id"), ("confirmed", "num"), ("dismissed", "num"), ("precision (smoothed)", "num")])
    for name, (p, c, x) in sorted(measured.items()):
        table.add_row(name, str(c), str(x), f"{p:.2f}")
    console.print(table)
    console.print("[dim]" + _t(cli_language.MSG_NO_VERDICTS, confirmed=f"{PRIOR_CONFIRMED:.0f}",
                                total=f"{PRIOR_TOTAL:.0f}") + "[/dim]")


def register(app: typer.Typer) -> None:
    app.add_typer(flags_app, name="flags")
