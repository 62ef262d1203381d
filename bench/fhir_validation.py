"""FHIR validation counts, run by hand: what Dawa exports of the small sample data set, checked
resource by resource with ``fhir.resources`` (R4 against its R4B models, which read R4 4.0.1
resources as far as Dawa emits them; R5 against its R5 models), counted per resource type and
version.

    .venv/bin/python bench/fhir_validation.py [--workdir /tmp/dawa-fhir-validation]

The small sample (``sample_data/small``) is imported into a fresh SQLite database, with monthly
stock reports for its last complete month derived from the ledger (closing stock, consumption and
stockout days as ``web.interop.dhis2.monthly_aggregates`` computes them, opening from the month
before, receipts balancing), so that MeasureReport (R4) and InventoryReport (R5) are exported too.
Each version is exported twice, patients by pseudonym (the default) and by health card, and each
Bundle is validated whole as well. Exits non-zero if any resource fails.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DAWA_PATIENT_ID_KEY", "fhir-validation-key")

import migrations  # noqa: E402
from sample_data import SMALL  # noqa: E402
from stock.db import make_engine, session_factory  # noqa: E402
from stock.importer import import_dataset  # noqa: E402


def _reports(session, folder: Path) -> int:
    """A stock_reports.csv of the sample's last complete month, derived from its ledger."""
    from sqlalchemy import func, select

    from stock.models import LedgerEntry
    from stock.settings import get_settings
    from web.interop.dhis2 import monthly_aggregates

    last = session.scalar(select(func.max(LedgerEntry.occurred_at)))
    y, m = (last.year, last.month - 1) if last.month > 1 else (last.year - 1, 12)
    period, before = f"{y:04d}-{m:02d}", f"{y - (m == 1):04d}-{(m - 2) % 12 + 1:02d}"
    zone = get_settings().default_timezone
    opening = {(a.facility_code, a.item_code): a.stock_on_hand
               for a in monthly_aggregates(session, before, default_zone=zone)}
    rows = ["facility_code,item_code,period,opening,received,consumed,adjustment,closing,stockout_days,ordered"]
    for a in monthly_aggregates(session, period, default_zone=zone):
        first = opening.get((a.facility_code, a.item_code), 0)
        received = max(a.stock_on_hand - first + a.consumption, 0)
        rows.append(f"{a.facility_code},{a.item_code},{period},{first},{received},{a.consumption},"
                    f"{first + received - a.consumption - a.stock_on_hand or ''},{a.stock_on_hand},{a.stockout_days},")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stock_reports.csv").write_text("\n".join(rows) + "\n")
    return len(rows) - 1


def validate(bundle: dict, version: str) -> tuple[Counter, Counter, list[str]]:
    """Resources and errors per type, and the first few error texts."""
    if version == "R4":
        from fhir.resources.R4B import get_fhir_model_class as model_of
    else:
        from fhir.resources import get_fhir_model_class as model_of
    seen, failed, texts = Counter(), Counter(), []
    model_of("Bundle").model_validate(bundle)
    for e in bundle["entry"]:
        t = e["resource"]["resourceType"]
        seen[t] += 1
        try:
            model_of(t).model_validate(e["resource"])
        except Exception as exc:  # noqa: BLE001 - a validation error of any kind is counted
            failed[t] += 1
            if len(texts) < 5:
                texts.append(f"{version} {t}: {exc}")
    return seen, failed, texts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dawa-fhir-validation"))
    args = ap.parse_args()
    import fhir.resources

    from stock.settings import get_settings
    from web.interop.fhir import write_bundle

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    engine = make_engine(f"sqlite:///{args.workdir / 'small.sqlite'}")
    migrations.upgrade(engine)
    with session_factory(engine)() as s:
        import_dataset(s, SMALL)
        s.commit()
        n = _reports(s, args.workdir / "reports")
        import_dataset(s, args.workdir / "reports")
        s.commit()
    print(f"small sample with {n} monthly stock reports; fhir.resources {fhir.resources.__version__}")
    print(f"{'version':8} {'patients':10} {'resource type':22} {'resources':>9} {'errors':>6}")
    bad, errors = 0, []
    with session_factory(engine, read_only=True)() as s:
        for version in ("R4", "R5"):
            for patient_ids in ("pseudonym", "card"):
                out = io.BytesIO()
                result = write_bundle(s, out, settings=get_settings(), version=version, patient_ids=patient_ids)
                seen, failed, texts = validate(json.loads(out.getvalue()), version)
                for t in sorted(seen):
                    print(f"{version:8} {patient_ids:10} {t:22} {seen[t]:>9,} {failed[t]:>6}")
                print(f"{version:8} {patient_ids:10} {'all':22} {sum(seen.values()):>9,} {sum(failed.values()):>6}")
                bad += sum(failed.values())
                for note in result.skipped:
                    print(f"{version:8} {patient_ids:10} note: {note}")
                errors += texts
    for text in errors:
        print(text)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
