"""FHIR import: MedicationDispense resources of a Bundle (R4 or R5 shape), recorded as dispensing
through ``stock.ledger.post``, from Dawa or from another system.

The medicine is found, in this order, by a coding in Dawa's item system, by a GTIN coding (any
pack's barcode, ``stock.gs1`` rules), or by its ATC code narrowed by the dose form and strength
the Medication states when several items share the code. Units are read by their UCUM code
(``web.interop.fhir_codes``), else by the unit text in singular or plural. When no lot is named for
an item held in lots, the lot is chosen first-expiry-first-out among those on hand that cover the
quantity (the order of ``web.pharmacy.fefo_lots``, the counter's own), and recorded as so chosen.

Authorship is the caller's: every entry is ``recorded_by`` the authenticated user (the CLI's named
operator), whatever the bundle says. The source's performer is kept as provenance beside the entry
(``web.interop.models.ImportProvenance``), never as the ledger's author.

The entry_id is the resource's Dawa entry identifier when it has one (a bundle exported by Dawa),
otherwise ``fhir-`` and the resource id, so importing the same bundle again adds nothing. Import is
all or nothing: every problem names the bundle entry index, the resource id, the field path and
what is wrong, and the caller rolls back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from stock.errors import DawaError, InvalidEntry
from stock.ledger import NewEntry, lock_chains, post
from stock.models import Facility, LedgerEntry, Lot
from stock.settings import Fhir
from web.interop.fhir_dispense import parse_dispense
from web.interop.fhir_items import Bad, Catalog
from web.interop.models import ImportProvenance


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a bundle, where a person can find it."""

    index: int | None
    resource_id: str | None
    path: str
    message: str

    def __str__(self) -> str:
        where = "bundle" if self.index is None else f"entry[{self.index}]"
        if self.resource_id:
            where += f" (id {self.resource_id})"
        return f"{where}: {self.path}: {self.message}"

    def expression(self) -> str:
        """The FHIRPath of the problem, for an OperationOutcome issue."""
        if self.index is None:
            return f"Bundle.{self.path}" if not self.path.startswith("(") else "Bundle"
        return f"Bundle.entry[{self.index}].resource.{self.path}"


class FhirImportFailed(DawaError):
    """The bundle cannot be recorded; nothing of it may be stored (the caller rolls back)."""

    def __init__(self, problems: list[Problem]):
        super().__init__(f"{len(problems)} problem(s) in the bundle; nothing was imported")
        self.problems = problems


@dataclass
class FhirImportReport:
    dispenses: int = 0
    added: int = 0
    already_present: int = 0
    skipped: list[str] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)
    lots_chosen: int = 0
    """Dispenses that named no lot, whose lot Dawa chose first-expiry-first-out."""


# Where each NewEntry field comes from in a MedicationDispense, for errors from the ledger.
_PATHS = {"entry_id": "id", "facility_code": "location", "item_code": "medication",
          "lot_number": "medication.batch.lotNumber", "expiry_date": "medication.batch.expirationDate",
          "quantity": "quantity.value", "occurred_at": "whenHandedOver", "health_card_id": "subject",
          "prescription_id": "authorizingPrescription", "recorded_by": "performer"}


@dataclass
class _Parsed:
    index: int
    rid: str | None
    entry: NewEntry
    path: str
    source_system: str | None
    source_user: str | None


def _load(data: bytes | str | dict) -> dict:
    if isinstance(data, dict):
        return data
    try:
        return json.loads(data, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FhirImportFailed([Problem(None, None, "(json)", f"not valid JSON: {exc}")]) from exc


def _fefo_lot(session: Session, new: NewEntry, today: date) -> str | None:
    """The lot to take a dispense that named none from, first-expiry-first-out among the
    unexpired lots on hand that cover its quantity; None when the item is held untracked only."""
    from web.pharmacy import fefo_lots  # the counter's order, so import and counter agree

    fac = session.scalars(select(Facility).where(Facility.code == new.facility_code)).one()
    lots = fefo_lots(session, fac, new.item_code, today)
    if not lots or all(c.lot_number == "" for c in lots):
        return None
    for c in lots:
        if not c.expired and c.on_hand >= new.quantity:
            return c.lot_number
    held = ", ".join(f"{c.lot_number or '(untracked)'}: {c.on_hand}{' expired' if c.expired else ''}" for c in lots)
    raise InvalidEntry(f"no lot was named and no unexpired lot of {new.item_code} at {new.facility_code} holds "
                       f"{new.quantity} ({held}); name the lot in Medication.batch.lotNumber", field="lot_number")


def _index(entries: list) -> dict[str, dict]:
    by_url: dict[str, dict] = {}
    for e in entries:
        if isinstance(e, dict) and isinstance(e.get("resource"), dict):
            r = e["resource"]
            if e.get("fullUrl"):
                by_url[e["fullUrl"]] = r
            if r.get("resourceType") and r.get("id"):
                by_url[f"{r['resourceType']}/{r['id']}"] = r
    return by_url


def import_bundle(session: Session, data: bytes | str | dict, *, imported_by: str, systems: Fhir,
                  facilities_allowed: set[str] | None = None, now: datetime | None = None) -> FhirImportReport:
    """Record a Bundle's completed MedicationDispense resources as dispensing, in occurred order,
    recorded by ``imported_by`` (the authenticated caller). Identifiers are read in the code
    systems ``systems`` (the install's ``settings.fhir``). A dispense at a facility not in
    ``facilities_allowed`` (when given) is refused before anything of that facility is read.

    Raises FhirImportFailed listing every problem; the caller then rolls back, so nothing is stored.
    Other resource types are not imported and are listed in ``skipped`` (MedicationRequest and
    Medication entries are read where a dispense references them).
    """
    bundle = _load(data)
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FhirImportFailed([Problem(None, None, "resourceType", "must be Bundle")])
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise FhirImportFailed([Problem(None, None, "entry", "must be a list")])
    by_url = _index(entries)
    catalog = Catalog(session)
    facilities = set(session.scalars(select(Facility.code)))
    now = now or datetime.now(timezone.utc)

    report = FhirImportReport()
    problems: list[Problem] = []
    parsed: list[_Parsed] = []
    seen: dict[str, int] = {}
    other: dict[str, int] = {}
    for index, e in enumerate(entries):
        res = e.get("resource") if isinstance(e, dict) else None
        if not isinstance(res, dict):
            problems.append(Problem(index, None, "resource", "missing: every entry must hold a resource"))
            continue
        rid = res.get("id") if isinstance(res.get("id"), str) and res.get("id") else None
        rtype = res.get("resourceType")
        if rtype != "MedicationDispense":
            if rtype not in ("MedicationRequest", "Medication", "Patient", "Location", "Organization"):
                other[str(rtype)] = other.get(str(rtype), 0) + 1
            continue
        report.dispenses += 1
        contained = {f"#{c.get('id')}": c for c in res.get("contained") or [] if isinstance(c, dict)}

        def resolve(ref, contained=contained):
            if not isinstance(ref, str):
                return None
            return contained.get(ref) or by_url.get(ref)

        try:
            got = parse_dispense(res, systems, resolve, imported_by, catalog, facilities)
        except Bad as bad:
            problems.append(Problem(index, rid, bad.path, bad.message))
            continue
        if isinstance(got, str):
            report.skipped.append(f"entry[{index}] (MedicationDispense/{rid}): {got}")
            continue
        new, path, src_system, src_user = got
        if facilities_allowed is not None and new.facility_code not in facilities_allowed:
            problems.append(Problem(index, rid, "location.identifier",
                                    f"facility {new.facility_code} is outside your scope"))
            continue
        if new.entry_id in seen:
            problems.append(Problem(index, rid, "id", f"entry_id {new.entry_id} is also entry[{seen[new.entry_id]}]"))
            continue
        seen[new.entry_id] = index
        parsed.append(_Parsed(index, rid, new, path, src_system, src_user))

    for rtype, n in sorted(other.items()):
        report.skipped.append(f"{n} {rtype} entr{'y' if n == 1 else 'ies'} not imported: only MedicationDispense is")
    if not problems:
        parsed.sort(key=lambda p: (p.entry.occurred_at.astimezone(timezone.utc), p.index))
        _post_all(session, parsed, report, problems, imported_by, now)
    if problems:
        raise FhirImportFailed(problems)
    return report


def _stored(session: Session, entry_ids: list[str]) -> dict[str, tuple[str, str]]:
    """The author and lot of the entries already recorded under these entry_ids."""
    out: dict[str, tuple[str, str]] = {}
    for start in range(0, len(entry_ids), 500):
        chunk = entry_ids[start:start + 500]
        out.update({eid: (by, lot) for eid, by, lot in session.execute(
            select(LedgerEntry.entry_id, LedgerEntry.recorded_by, Lot.lot_number)
            .join(Lot, Lot.id == LedgerEntry.lot_id).where(LedgerEntry.entry_id.in_(chunk)))})
    return out


def _post_all(session: Session, parsed: list[_Parsed], report: FhirImportReport, problems: list[Problem],
              imported_by: str, now: datetime) -> None:
    stored = _stored(session, [p.entry.entry_id for p in parsed])
    lock_chains(session, [p.entry.facility_code for p in parsed])  # one order, as every writer
    for p in parsed:
        new, lot_choice = p.entry, None
        if new.entry_id in stored:
            # Already recorded: judged against what is stored, under its author and its lot (an
            # import again, by anyone, adds nothing; it never re-authors nor re-chooses).
            author, lot = stored[new.entry_id]
            new = replace(new, recorded_by=author, lot_number=new.lot_number or lot)
        try:
            if not new.lot_number:
                chosen = _fefo_lot(session, new, p.entry.occurred_at.date())
                if chosen is not None:
                    new = replace(new, lot_number=chosen)
                    lot_choice = "fefo"
            (posted,) = post(session, new, now=now)
        except DawaError as exc:
            path = _PATHS.get(exc.field or "", exc.field or "(entry)")
            if path.startswith("medication.batch"):
                path = f"{p.path}(Medication).batch{path.removeprefix('medication.batch')}" \
                    if p.path != "medication" else path
            problems.append(Problem(p.index, p.rid, path, str(exc)))
            continue
        if posted.created:
            report.added += 1
            report.lots_chosen += lot_choice is not None
            if lot_choice or p.source_user:
                session.add(ImportProvenance(entry_id=new.entry_id, source_system=p.source_system,
                                             source_user=p.source_user, lot_choice=lot_choice,
                                             imported_by=imported_by, imported_at=now))
        else:
            report.already_present += 1
        for note in posted.notes:
            report.notes[note.code] = report.notes.get(note.code, 0) + 1
    session.flush()


__all__ = ["import_bundle", "FhirImportReport", "FhirImportFailed", "Problem"]
