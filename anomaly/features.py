"""Frames built once per scan, that every detector reads.

One query joins the ledger with its master data; everything else is derived in pandas. Times are
kept in UTC and also in the facility's own zone (off-hours are local).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from datetime import datetime

from sqlalchemy import bindparam, inspect, text
from sqlalchemy.orm import Session

from anomaly import corrections
from stock.models import UTCDateTime
from stock.settings import Detection, get_settings

_ENTRIES_SQL = """
SELECT e.id AS seq, e.entry_id, f.code AS facility_code, f.kind AS facility_kind, f.region,
       f.timezone, e.kind, i.code AS item_code, i.name AS item_name, i.unit, i.controlled,
       i.max_dispense_quantity, l.lot_number, l.expiry_date, e.quantity, e.effect, e.book_quantity,
       e.occurred_at, e.recorded_by, p.health_card_id, p.registered AS patient_registered,
       p.deceased_on, e.prescription_ref AS prescription_id, e.counterparty, e.reason,
       e.document_number, e.reverses, e.serial_number, i.gtin
FROM ledger_entry e
JOIN facility f ON f.id = e.facility_id
JOIN item i ON i.id = e.item_id
JOIN lot l ON l.id = e.lot_id
LEFT JOIN patient p ON p.id = e.patient_id
{where}
ORDER BY e.id
"""

_PRESCRIPTIONS_SQL = """
SELECT r.code AS prescription_id, p.health_card_id, f.code AS facility_code, r.prescriber,
       i.code AS item_code, r.quantity, r.days_supply, r.issued_on
FROM prescription r
JOIN patient p ON p.id = r.patient_id
JOIN facility f ON f.id = r.facility_id
JOIN item i ON i.id = r.item_id
"""


_ITEM_CHANGES_SQL = """
SELECT object_id AS item_code, field, at, old
FROM master_data_change
WHERE object_type = 'item' AND field IN ('controlled', 'max_dispense_quantity')
ORDER BY at DESC, id DESC
"""


def _read(session: Session, sql: str, params: dict | None = None, types: dict | None = None) -> pd.DataFrame:
    stmt = text(sql)
    if types:
        stmt = stmt.bindparams(*(bindparam(k, type_=t) for k, t in types.items()))
    result = session.connection().execute(stmt, params or {})
    # Plain tuples: pandas takes them on its fast path, where Row objects cost it three times as
    # long as the fetch itself (about 18 s for a million ledger rows).
    return pd.DataFrame([tuple(row) for row in result], columns=list(result.keys()))


def _utc(series: pd.Series) -> pd.Series:
    out = pd.to_datetime(series, utc=True, format="ISO8601") if len(series) else series
    return out.astype("datetime64[us, UTC]") if len(series) else out


@dataclass
class Frames:
    entries: pd.DataFrame
    prescriptions: pd.DataFrame
    settings: Detection
    requisitions: pd.DataFrame | None = None
    """Submitted requisition lines (anomaly.detectors.requisitions reads them); None when not read."""

    @property
    def as_of(self) -> pd.Timestamp:
        """The latest movement: 'now' for a ledger that may be replayed or imported late."""
        return self.entries["occurred_at"].max()

    @cached_property
    def live(self) -> pd.DataFrame:
        """Entries that were not reversed, and are not themselves reversals."""
        e = self.entries
        return e[~e["reversed"] & (e["reverses"] == "")]

    @cached_property
    def dispenses(self) -> pd.DataFrame:
        return self.live[self.live["kind"] == "dispense"]

    def of_kind(self, *kinds: str) -> pd.DataFrame:
        return self.live[self.live["kind"].isin(kinds)]


def build(session: Session, settings: Detection | None = None, *, since: datetime | None = None) -> Frames:
    """Frames of the whole ledger, or of the movements since ``since`` (an incremental scan's
    window: detectors then see that window only)."""
    settings = settings or get_settings().detection
    if since is None:
        e = _read(session, _ENTRIES_SQL.format(where=""))
    else:
        e = _read(session, _ENTRIES_SQL.format(where="WHERE e.occurred_at >= :since"), {"since": since},
                  {"since": UTCDateTime()})
    rx = _read(session, _PRESCRIPTIONS_SQL)
    for col in ("quantity", "effect", "book_quantity", "max_dispense_quantity"):
        e[col] = pd.to_numeric(e[col], errors="coerce").astype("float64") / 1000.0
    if len(rx):
        rx["quantity"] = pd.to_numeric(rx["quantity"]).astype("float64") / 1000.0
        rx["issued_on"] = pd.to_datetime(rx["issued_on"])
    else:
        rx = pd.DataFrame(columns=["prescription_id", "health_card_id", "facility_code", "prescriber",
                                   "item_code", "quantity", "days_supply", "issued_on"])
    e["occurred_at"] = _utc(e["occurred_at"])
    e["expiry_date"] = pd.to_datetime(e["expiry_date"])
    e["deceased_on"] = pd.to_datetime(e["deceased_on"])
    for col in ("health_card_id", "prescription_id", "counterparty", "reason", "document_number",
                "reverses", "lot_number", "serial_number", "gtin"):
        e[col] = e[col].fillna("").astype(str)
    e["controlled"] = e["controlled"].astype(bool)
    # No patient (not a dispense) counts as registered: only dispenses are judged on it.
    e["patient_registered"] = e["patient_registered"].astype("boolean").fillna(True).astype(bool)
    _rules_in_force(session, e)
    e["reversed"] = e["entry_id"].isin(set(e.loc[e["reverses"] != "", "reverses"]))
    corrections.net(e, rx)
    _local_times(e, get_settings().default_timezone)
    from anomaly.detectors.requisitions import requisition_frame  # the detector owns its frame's query

    return Frames(e, rx, settings, requisitions=requisition_frame(session))


def _rules_in_force(session: Session, e: pd.DataFrame) -> None:
    """Judge each movement by the item's ceiling and controlled flag as they stood when it
    happened: lowering a ceiling or controlling an item today makes no offence of a dispensing that
    was within the rules when it was made. master_data_change keeps every change with its time;
    the value in force at a moment is the ``old`` of the first change after it (the latest
    changes are applied first, so the earliest one after a movement has the last word)."""
    if e.empty or not inspect(session.connection()).has_table("master_data_change"):
        return  # nothing recorded yet, or a schema from before master data was versioned
    changes = _read(session, _ITEM_CHANGES_SQL)
    if changes.empty:
        return
    changes["at"] = _utc(changes["at"])
    items = e["item_code"]
    for row in changes.itertuples(index=False):
        before = (items == row.item_code) & (e["occurred_at"] < row.at)
        if not before.any():
            continue
        if row.field == "controlled":
            e.loc[before, "controlled"] = str(row.old).lower() in ("1", "true", "t")
        else:
            e.loc[before, "max_dispense_quantity"] = (float(row.old) / 1000.0 if row.old not in (None, "")
                                                      else np.nan)


def _local_times(e: pd.DataFrame, default_zone: str) -> None:
    """Local hour and month of each movement, in its facility's zone."""
    zones = e["timezone"].fillna(default_zone).replace("", default_zone)
    hour = np.zeros(len(e), dtype="int64")
    month = pd.Series(pd.NaT, index=e.index, dtype="datetime64[us]")
    local_date = pd.Series(pd.NaT, index=e.index, dtype="datetime64[us]")
    for zone in zones.unique():
        mask = (zones == zone).to_numpy()
        local = e.loc[mask, "occurred_at"].dt.tz_convert(zone)
        hour[mask] = local.dt.hour.to_numpy()
        naive = local.dt.tz_localize(None)
        local_date[mask] = naive.dt.normalize().to_numpy()
        month[mask] = naive.dt.to_period("M").dt.start_time.to_numpy()
    e["local_hour"] = hour
    e["local_date"] = local_date
    e["month"] = month
