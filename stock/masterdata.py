"""Master data: facilities, items, patients, prescriptions, users.

Master data is reference, not history: it is created and corrected in place (a name fixed, a death
recorded). What happened to stock lives only in the ledger.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from stock import chain
from stock.errors import InvalidEntry, UnknownFacility, UnknownItem
from stock.gs1 import normalize_gtin
from stock.models import (
    FACILITY_KINDS,
    ROLES,
    ChainHead,
    Facility,
    Item,
    Patient,
    Prescription,
    User,
)


def facility_by_code(session: Session, code: str) -> Facility:
    fac = session.scalars(select(Facility).where(Facility.code == code)).one_or_none()
    if fac is None:
        raise UnknownFacility(f"unknown facility {code!r}")
    return fac


def item_by_gtin(session: Session, gtin: str) -> Item | None:
    """The item whose packs carry ``gtin`` (any of its lengths), or None."""
    return session.scalars(select(Item).where(Item.gtin == normalize_gtin(gtin))).one_or_none()


def item_by_code(session: Session, code: str) -> Item:
    item = session.scalars(select(Item).where(Item.code == code)).one_or_none()
    if item is None:
        raise UnknownItem(f"unknown item {code!r}")
    return item


def add_facility(session: Session, code: str, name: str, region: str, kind: str,
                 parent_code: str | None = None, timezone_name: str | None = None) -> Facility:
    if kind not in FACILITY_KINDS:
        raise InvalidEntry(f"kind {kind!r} is not one of {', '.join(FACILITY_KINDS)}", field="kind")
    parent = facility_by_code(session, parent_code) if parent_code else None
    fac = Facility(code=code, name=name, region=region, kind=kind,
                   parent_id=parent.id if parent else None, timezone=timezone_name)
    session.add(fac)
    session.flush()
    # The chain head exists from the start, so concurrent first writers only ever lock it.
    session.add(ChainHead(facility_id=fac.id, length=0, head_hash=chain.GENESIS))
    session.flush()
    return fac


def add_item(session: Session, code: str, name: str, unit: str, controlled: bool = False,
             atc_code: str | None = None, form: str | None = None,
             max_dispense_quantity: Decimal | int | None = None, gtin: str | None = None) -> Item:
    """``gtin`` is checked (length and check digit) and kept as 14 digits."""
    item = Item(code=code, name=name, unit=unit, controlled=controlled, atc_code=atc_code, form=form,
                max_dispense_quantity=None if max_dispense_quantity is None else Decimal(max_dispense_quantity),
                gtin=normalize_gtin(gtin) if gtin else None)
    session.add(item)
    session.flush()
    return item


def add_patient(session: Session, health_card_id: str, birth_year: int | None = None,
                sex: str | None = None, home_facility_code: str | None = None,
                deceased_on: date | None = None) -> Patient:
    home = facility_by_code(session, home_facility_code) if home_facility_code else None
    patient = Patient(health_card_id=health_card_id, birth_year=birth_year, sex=sex,
                      home_facility_id=home.id if home else None, deceased_on=deceased_on,
                      registered=True)
    session.add(patient)
    session.flush()
    return patient


def add_prescription(session: Session, code: str, health_card_id: str, facility_code: str,
                     item_code: str, quantity: Decimal | int, days_supply: int, issued_on: date,
                     prescriber: str = "dr-1", diagnosis_code: str | None = None) -> Prescription:
    patient = session.scalars(select(Patient).where(Patient.health_card_id == health_card_id)).one()
    rx = Prescription(code=code, patient_id=patient.id,
                      facility_id=facility_by_code(session, facility_code).id,
                      prescriber=prescriber, item_id=item_by_code(session, item_code).id,
                      quantity=Decimal(quantity), days_supply=days_supply, issued_on=issued_on,
                      diagnosis_code=diagnosis_code)
    session.add(rx)
    session.flush()
    return rx


def add_user(session: Session, username: str, role: str, facility_code: str | None = None,
             region: str | None = None, display_name: str | None = None) -> User:
    if role not in ROLES:
        raise InvalidEntry(f"role {role!r} is not one of {', '.join(ROLES)}", field="role")
    fac = facility_by_code(session, facility_code) if facility_code else None
    user = User(username=username, role=role, facility_id=fac.id if fac else None, region=region,
                display_name=display_name, active=True, created_at=datetime.now(timezone.utc))
    session.add(user)
    session.flush()
    return user
