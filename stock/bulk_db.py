"""The bulk import's reads and writes through the database driver's own connection: ids looked
up a column at a time, master data upserted, and values as each driver is handed them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from stock.models import Base


@dataclass
class PatientIds:
    ids: dict[str, int]
    created: int


def _driver(session: Session):
    """The driver's own connection and its placeholder: bulk reads and writes skip the ORM."""
    raw = session.connection().connection.driver_connection
    return raw, "?" if session.get_bind().dialect.name == "sqlite" else "%s"


def lookup(values: pd.Series, mapping: dict, missing: int = -1) -> np.ndarray:
    """``mapping[v]`` for each value (int64; ``missing`` where absent), one dict lookup per
    distinct value: Series.map on text goes row by row through Python."""
    codes, uniques = pd.factorize(values)
    # Iterating an Arrow-backed Index goes value by value through pandas: make it a list first.
    table = np.fromiter((mapping.get(u, missing) for u in uniques.tolist()), dtype="int64", count=len(uniques))
    return np.append(table, missing)[codes]  # code -1 (a missing value) takes the last slot


def ids_or_none(values: pd.Series, mapping: dict, missing: str | None = None) -> list:
    """``mapping[v]`` as a Python int, or ``missing`` where the value is '' or not in ``mapping``."""
    ids = lookup(values, mapping)
    out = ids.astype(object)
    out[(ids == -1) | (values == "").to_numpy()] = missing
    return out.tolist()


def patient_ids(session: Session, cards: list[str]) -> PatientIds:
    """Ids of the patients holding ``cards``; a card not in the register becomes an unregistered
    patient (the evidence a ghost-patient detector needs), never an error."""
    session.flush()
    raw, ph = _driver(session)
    wanted = {c for c in cards if c}
    cur = raw.cursor()
    try:
        cur.execute("SELECT health_card_id, id FROM patient")
        ids = dict(cur.fetchall())
        missing = sorted(wanted - ids.keys())
        if missing:
            newest = max(ids.values(), default=0)
            cur.executemany(f"INSERT INTO patient (health_card_id, registered) VALUES ({ph}, {ph})",
                            [(c, db_bool(session, False)) for c in missing])
            # Ids only grow: the rows just added are the ones above the newest seen.
            cur.execute(f"SELECT health_card_id, id FROM patient WHERE id > {ph}", (newest,))
            ids.update(cur.fetchall())
    finally:
        cur.close()
    return PatientIds(ids, len(missing))


def null_value(session: Session) -> str | None:
    """What a bulk write hands the driver for SQL NULL.

    On SQLite it is '', which the INSERT turns back into NULL (see ``insert_sql``): the sqlite3
    module binds a str directly but sends None through its adapter lookup, which cost more than
    all the rest of binding a ledger row (about 4 s of 9 s for a million rows). On PostgreSQL
    (COPY, executemany) it is None."""
    return "" if session.get_bind().dialect.name == "sqlite" else None


def nulls(values: list, nul: str | None) -> list:
    """Cells with '' (or None) as ``nul``: what a bulk write hands the driver for an empty cell."""
    return values if nul == "" else [v or nul for v in values]


def _params(session: Session, table: str, columns: tuple[str, ...]) -> list[str]:
    """The driver's parameter for each of ``columns``. On SQLite a column the schema lets be NULL
    takes NULLIF(?, ''), so that '' (``null_value``) stores NULL."""
    if session.get_bind().dialect.name != "sqlite":
        return ["%s"] * len(columns)
    schema = Base.metadata.tables[table].c
    return ["NULLIF(?, '')" if schema[c].nullable else "?" for c in columns]


def insert_sql(session: Session, table: str, columns: tuple[str, ...]) -> str:
    """An INSERT of ``columns`` for the driver's executemany, ``null_value`` meaning NULL."""
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(_params(session, table, columns))})"


def upsert_rows(session: Session, table: str, columns: tuple[str, ...], rows: list[tuple]) -> int:
    """Insert or update master-data rows through the driver: ``rows[i][0]`` is the natural key
    (the first of ``columns``). A row equal to what is stored is left alone, so re-importing the
    same file writes nothing. Values must be as the driver stores and returns them (see
    ``db_dates`` and ``db_bool``), with ``null_value`` for NULL. Returns how many rows were
    inserted or changed."""
    session.flush()
    raw, ph = _driver(session)
    params = _params(session, table, columns)
    # Stored NULLs read back as '' where '' stands for NULL, so that a row compares equal to what
    # it would store.
    read = [f"IFNULL({c}, '')" if p.startswith("NULLIF") else c for c, p in zip(columns, params)]
    cur = raw.cursor()
    try:
        cur.execute(f"SELECT {', '.join(read)}, id FROM {table}")
        stored = {r[0]: r for r in cur.fetchall()}
        new, changed = [], []
        for r in rows:
            old = stored.get(r[0])
            if old is None:
                new.append(r)
            elif tuple(old[:-1]) != r:
                changed.append((*r[1:], old[-1]))
        if new:
            cur.executemany(insert_sql(session, table, columns), new)
        if changed:
            sets = ", ".join(f"{c} = {p}" for c, p in zip(columns[1:], params[1:]))
            cur.executemany(f"UPDATE {table} SET {sets} WHERE id = {ph}", changed)
    finally:
        cur.close()
    session.expire_all()
    return len(new) + len(changed)


def db_dates(session: Session, values: list[str]) -> list:
    """Contract dates (validated 'YYYY-MM-DD' text, or '') as the driver is handed them: SQLite
    stores the text itself ('' stands for none, see ``null_value``); PostgreSQL takes dates."""
    if session.get_bind().dialect.name == "sqlite":
        return values
    return [date.fromisoformat(v) if v else None for v in values]


def db_bool(session: Session, value: bool) -> bool | int:
    """A boolean as the driver is handed it: SQLite stores 0 and 1, and the sqlite3 module binds
    an int directly but sends a bool through its adapter lookup (see ``null_value``)."""
    return int(value) if session.get_bind().dialect.name == "sqlite" else value

