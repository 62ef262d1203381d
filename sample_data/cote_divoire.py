"""Convert the public Côte d'Ivoire contraceptive logistics data (2016-01 to 2019-09: monthly stock
reports of 156 health facilities, 11 products) into a Dawa data set folder.

    python -m sample_data.cote_divoire SOURCE_DIR OUT_DIR
    dawa import OUT_DIR && dawa scan

SOURCE_DIR holds the publisher's files (see its SOURCE.md). What is written, following the data
contract (docs/DATA_CONTRACT.md):

- facilities.csv from service_delivery_site_data.csv: code = site_code; name = site type, code and
  district (the source names no facility); region = site_region; kind = ``hospital`` for
  hospitals and university hospitals/national institutes, ``health_center`` for health centres.
- items.csv from product.csv: code = product_code, name = product_name; form from the product
  type; unit from the presentation's last word (``BOITE`` = box, ``UNITE`` = piece), since the
  publisher counts every quantity in dispensing units; no ATC code (the source gives none).
- stock_reports.csv from contraceptive_logistics_data.csv, one row per site, product and month:
  period = year-month, opening = stock_initial, received = stock_received, consumed =
  stock_distributed, adjustment = stock_adjustment, closing = stock_end, stockout_days =
  stock_stockout_days, ordered = stock_ordered (empty where the source is empty).

Every figure is copied unchanged except one kind: a stockout-days value above 31 (the source has
two, 50 and 300) cannot be a count of days in a month, and import refuses it; it is written as
empty (not reported) and listed on standard output. average_monthly_consumption is left out: it is
derived by the source system from other months, not reported. The district-level case data is not
a stock report and is not converted.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

KINDS = {"Hospital": "hospital", "Health Center": "health_center",
         "University Hospital/National Institute": "hospital"}
FORMS = {"Female Condom": "condom", "Male Condom": "condom", "Emergency Contraceptive (Pill)": "tablet",
         "Contraceptive Implant": "implant", "Injectable Contraceptive": "injection",
         "Intrauterine Device (IUD)": "device", "Oral Contraceptive (Pill)": "tablet"}
UNITS = {"BOITE": "box", "UNITE": "piece"}
MAX_STOCKOUT_DAYS = 31


@dataclass
class Conversion:
    facilities: int = 0
    items: int = 0
    reports: int = 0
    blanked: list[str] = field(default_factory=list)
    """Values not copied, each as 'source line: column value (why)'."""


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")


def convert(source: Path, out: Path) -> Conversion:
    source, out = Path(source), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = Conversion()

    sites = _read(source / "service_delivery_site_data.csv")
    unknown = sorted(set(sites["site_type"]) - set(KINDS))
    if unknown:
        raise SystemExit(f"service_delivery_site_data.csv: unknown site_type {unknown}")
    facilities = pd.DataFrame({
        "code": sites["site_code"].str.strip(),
        "name": sites["site_type"].str.strip() + " " + sites["site_code"].str.strip() + ", "
                + sites["site_district"].str.strip().str.title(),
        "region": sites["site_region"].str.strip(),
        "kind": sites["site_type"].map(KINDS),
        "parent_code": "",
    })
    facilities.to_csv(out / "facilities.csv", index=False, quoting=csv.QUOTE_MINIMAL)
    result.facilities = len(facilities)

    products = _read(source / "product.csv")
    names = products["product_name"].str.strip()
    items = pd.DataFrame({
        "code": products["product_code"].str.strip(),
        "name": names,
        "atc_code": "",
        "form": products["product_type"].map(FORMS).fillna(""),
        "unit": names.str.split().str[-1].map(UNITS).fillna("piece"),
        "controlled": "false",
        "max_dispense_quantity": "",
    })
    items.to_csv(out / "items.csv", index=False)
    result.items = len(items)

    raw = _read(source / "contraceptive_logistics_data.csv")
    days = raw["stock_stockout_days"].str.strip()
    impossible = pd.to_numeric(days, errors="coerce") > MAX_STOCKOUT_DAYS
    for i in impossible[impossible].index:
        result.blanked.append(f"contraceptive_logistics_data.csv:{i + 2}: stock_stockout_days {days[i]} "
                              f"({raw.at[i, 'site_code']} {raw.at[i, 'product_code']} "
                              f"{raw.at[i, 'year']}-{int(raw.at[i, 'month']):02d}: more days than a month has)")
    ordered = raw["stock_ordered"].str.strip()
    # The source writes whole quantities, as floats where the column has gaps (10.0).
    ordered = ordered.str.replace(r"\.0+$", "", regex=True)
    reports = pd.DataFrame({
        "facility_code": raw["site_code"].str.strip(),
        "item_code": raw["product_code"].str.strip(),
        "period": raw["year"].str.strip() + "-" + raw["month"].str.strip().str.zfill(2),
        "opening": raw["stock_initial"].str.strip(),
        "received": raw["stock_received"].str.strip(),
        "consumed": raw["stock_distributed"].str.strip(),
        "adjustment": raw["stock_adjustment"].str.strip(),
        "closing": raw["stock_end"].str.strip(),
        "stockout_days": days.where(~impossible, ""),
        "ordered": ordered,
    }).sort_values(["facility_code", "item_code", "period"], kind="stable")
    reports.to_csv(out / "stock_reports.csv", index=False)
    result.reports = len(reports)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="folder with the publisher's CSV files")
    parser.add_argument("out", type=Path, help="data set folder to write")
    args = parser.parse_args(argv)
    result = convert(args.source, args.out)
    print(f"wrote {args.out}: {result.facilities} facilities, {result.items} items, "
          f"{result.reports} stock reports")
    for line in result.blanked:
        print(f"left empty: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
