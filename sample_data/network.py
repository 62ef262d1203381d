"""The facility network: one central warehouse, a warehouse per region, and the facilities they supply.

Detectors compare a facility with its peers and its region, and auditors filter by region, so the
network has to look like a real one: several regions of unequal size, hospitals much larger than
health centres, sizes varying about tenfold within a kind, and staff user ids and prescriber ids
that belong to one facility each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sample_data.catalog import CENTRAL_WAREHOUSE_CODE, CENTRAL_WAREHOUSE_NAME, REGIONS

WAREHOUSE, HOSPITAL, HEALTH_CENTER, PHARMACY = 0, 1, 2, 3
KIND_NAMES = ("warehouse", "hospital", "health_center", "pharmacy")


@dataclass
class Network:
    codes: list[str]
    names: list[str]
    region: np.ndarray            # index into ``region_names``
    region_names: list[str]
    kind: np.ndarray              # WAREHOUSE, HOSPITAL, HEALTH_CENTER, PHARMACY
    parent: np.ndarray            # facility index, -1 for none
    weight: np.ndarray            # relative size (patients, volume)
    user_ids: list[str]
    user_offset: np.ndarray       # first user of each facility in ``user_ids``
    user_count: np.ndarray
    night_users: np.ndarray       # the last ``night_users`` of a hospital work nights
    prescriber_ids: list[str]
    prescriber_offset: np.ndarray
    prescriber_count: np.ndarray
    central: int
    regional_warehouse: np.ndarray  # per region
    main_hospital: np.ndarray       # per region: the largest hospital (oncology, surgery)
    closed: np.ndarray | None = None
    """Per facility and weekday (Monday = 0), whether it is closed; None: health centres close on
    Friday only."""
    night_share: float = 0.25
    """Share of a hospital pharmacy's dispensings made on the night shift."""

    @property
    def size(self) -> int:
        return len(self.codes)

    def dispensing(self) -> np.ndarray:
        return np.flatnonzero(self.kind != WAREHOUSE)

    def in_region(self, region: int, kinds: tuple[int, ...]) -> np.ndarray:
        return np.flatnonzero((self.region == region) & np.isin(self.kind, kinds))


def region_count(scale: float) -> int:
    """Regions grow slowly with scale: a national data set has them all, a test set only two."""
    return int(np.clip(round(5 + 1.5 * math.log2(max(scale, 1e-6))), 2, len(REGIONS)))


def _split(total: int, weights: np.ndarray, minimum: int) -> np.ndarray:
    """Largest-remainder apportionment of ``total`` with a floor per share."""
    base = np.full(len(weights), minimum)
    rest = max(total - base.sum(), 0)
    exact = rest * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: rest - counts.sum()]] += 1
    return base + counts


def build_network(rng: np.random.Generator, scale: float) -> Network:
    regions = REGIONS[: region_count(scale)]
    n_regions = len(regions)
    n_dispensing = max(3 * n_regions, round(60 * scale))
    per_region = _split(n_dispensing, np.array([r.population_weight for r in regions]), 3)

    codes = [CENTRAL_WAREHOUSE_CODE]
    names = [CENTRAL_WAREHOUSE_NAME]
    region = [0]
    kind = [WAREHOUSE]
    parent = [-1]
    weight = [0.0]
    regional_wh = []
    for r, reg in enumerate(regions):
        regional_wh.append(len(codes))
        codes.append(f"{reg.code}-WH")
        names.append(f"{reg.name} Regional Medical Store")
        region.append(r)
        kind.append(WAREHOUSE)
        parent.append(0)
        weight.append(0.0)

    main_hospital = []
    used_names: set[str] = set()
    for r, reg in enumerate(regions):
        n = int(per_region[r])
        n_hosp = max(1, round(0.15 * n))
        n_pharm = max(1, round(0.35 * n))
        n_hc = max(1, n - n_hosp - n_pharm)
        districts = reg.districts
        hosp_w = np.clip(rng.lognormal(math.log(5.0), 0.5, n_hosp), 2.0, 12.0)
        hosp_w[0] = max(hosp_w.max() * 1.15, 6.0)  # the regional medical centre
        hc_w = np.clip(rng.lognormal(math.log(1.2), 0.5, n_hc), 0.4, 4.0)
        ph_w = np.clip(rng.lognormal(math.log(1.0), 0.5, n_pharm), 0.3, 4.0)
        for kind_code, count, weights, tag in ((HOSPITAL, n_hosp, hosp_w, "H"),
                                               (HEALTH_CENTER, n_hc, hc_w, "HC"),
                                               (PHARMACY, n_pharm, ph_w, "PH")):
            for j in range(count):
                if kind_code == HOSPITAL and j == 0:
                    main_hospital.append(len(codes))
                    name = f"{reg.name} Medical Centre"
                else:
                    d = districts[(j + 3 * kind_code) % len(districts)]
                    label = {HOSPITAL: "Hospital", HEALTH_CENTER: "Health Centre", PHARMACY: "Public Pharmacy"}[kind_code]
                    name = f"{d} {label}"
                    lap = 1
                    while name in used_names:
                        lap += 1
                        name = f"{d} {label} {lap}"
                used_names.add(name)
                codes.append(f"{reg.code}-{tag}{j + 1:02d}")
                names.append(name)
                region.append(r)
                kind.append(kind_code)
                parent.append(regional_wh[r])
                weight.append(float(weights[j]))

    kind_a = np.array(kind, dtype=np.int64)
    weight_a = np.array(weight)
    n_users = np.where(kind_a == HOSPITAL, 5 + np.round(weight_a),
                       np.where(kind_a == WAREHOUSE, 3, 2 + np.round(weight_a / 1.5))).astype(np.int64)
    n_users[0] = 6
    night = np.where(kind_a == HOSPITAL, n_users // 3, 0)
    n_presc = np.where(kind_a == HOSPITAL, 4 + 2 * np.round(weight_a),
                       np.where(kind_a == HEALTH_CENTER, 1 + np.round(weight_a), 0)).astype(np.int64)
    user_ids = [f"u-{c}-{u + 1:02d}" for c, n in zip(codes, n_users) for u in range(n)]
    presc_ids = [f"dr-{c}-{p + 1:02d}" for c, n in zip(codes, n_presc) for p in range(n)]
    return Network(
        codes=codes, names=names, region=np.array(region), region_names=[r.name for r in regions],
        kind=kind_a, parent=np.array(parent), weight=weight_a,
        user_ids=user_ids, user_offset=np.concatenate([[0], np.cumsum(n_users)[:-1]]), user_count=n_users,
        night_users=night,
        prescriber_ids=presc_ids, prescriber_offset=np.concatenate([[0], np.cumsum(n_presc)[:-1]]),
        prescriber_count=n_presc,
        central=0, regional_warehouse=np.array(regional_wh), main_hospital=np.array(main_hospital),
    )
