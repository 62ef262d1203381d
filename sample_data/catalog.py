"""Reference tables behind the sample data: regions, medicines, treatment regimens, suppliers.

They live apart from the generator so that the shape of a plausible Libyan national system (which
regions, which medicines with their real WHO ATC codes, which diagnoses lead to which dispensing)
can be read and adjusted in one place without touching the simulation.

Quantities here are in the item's base unit. Items whose unit is divisible (``ml``) may use one
decimal place; the generator works internally in tenths of a unit for those ("ticks") so that all
stock arithmetic stays in exact integers.
"""

from __future__ import annotations

from dataclasses import dataclass

DECIMAL_UNITS = frozenset({"ml"})
"""Units whose quantities may carry one decimal place (the contract allows decimals there only)."""


@dataclass(frozen=True)
class Region:
    code: str
    name: str
    population_weight: float
    districts: tuple[str, ...]


# Ordered by population so that a small data set keeps the largest regions.
REGIONS: tuple[Region, ...] = (
    Region("TRP", "Tripoli", 3.0, ("Souq al Jumaa", "Tajoura", "Abu Salim", "Janzour", "Ain Zara",
                                   "Hay al Andalus", "Qasr bin Ghashir", "Al Hadba", "Fashloum",
                                   "Ben Ashour", "Al Dahra", "Gargaresh", "Siyahiya", "Arada")),
    Region("BEN", "Benghazi", 2.0, ("Al Berka", "Al Sabri", "Al Kish", "Qar Yunis", "Al Hadaiq",
                                    "Al Laithi", "Sidi Hussein", "Al Salmani", "Bu Atni", "Guwarsha",
                                    "Al Fuwayhat", "Sidi Khalifa")),
    Region("MIS", "Misrata", 1.3, ("Zarruq", "Al Ghiran", "Qasr Ahmed", "Ras al Tub", "Al Jazeera",
                                   "Tamina", "Dafniya", "Karzaz", "Al Sikt")),
    Region("ZAW", "Zawiya", 1.1, ("Al Harsha", "Jadaim", "Al Matrid", "Bir Shuaib", "Al Hamidiya",
                                  "Al Shurafa", "Abu Issa", "Al Maamura")),
    Region("SAB", "Sabha", 0.8, ("Al Jadid", "Al Manshiya", "Al Qurdha", "Hajara", "Al Nasiriya",
                                 "Sukra", "Tayuri", "Al Mahdiya")),
    Region("BAY", "Al Bayda", 0.8, ("Shahhat", "Al Abraq", "Susa", "Ras al Hilal", "Qasr Libya",
                                    "Al Faidiya", "Omar al Mukhtar")),
    Region("SRT", "Sirte", 0.6, ("Abu Hadi", "Harawa", "Zaafran", "Sultan", "Al Gharbiyat",
                                 "Sirte Centre")),
    Region("TBK", "Tobruk", 0.6, ("Bombah", "Kambut", "Al Adem", "Bir Hakeim", "Ain al Ghazala",
                                  "Tobruk Centre")),
    Region("GHR", "Gharyan", 0.6, ("Abu Ghaylan", "Al Asabia", "Tighrinna", "Al Qawasim",
                                   "Gharyan Centre")),
    Region("DRN", "Derna", 0.5, ("Ain Mara", "Al Qubba", "Lathrun", "Karsa", "Derna Centre")),
    Region("ZLT", "Zliten", 0.5, ("Kaam", "Majer", "Al Dafniya", "Zliten Centre", "Al Mariqib")),
    Region("UBR", "Ubari", 0.3, ("Germa", "Al Ghrayfa", "Tasawa", "Ubari Centre", "Bint Bayya")),
)

CENTRAL_WAREHOUSE_CODE = "NAT-WH"
CENTRAL_WAREHOUSE_NAME = "National Medical Supply Central Warehouse"

SUPPLIERS: tuple[str, ...] = (
    "MEDIPHARM SUPPLY",
    "AL NAHR MEDICAL TRADING",
    "SAHARA HEALTHCARE IMPORT",
    "MEDITERRANEAN PHARMA DISTRIBUTION",
    "LIBYAN PHARMACEUTICAL COMPANY",
    "ONCOCARE INTERNATIONAL",
)


@dataclass(frozen=True)
class Item:
    code: str
    name: str
    atc_code: str
    form: str
    unit: str
    controlled: bool
    max_dispense: float | None
    pack: float
    """What a warehouse ships in (a box, a bottle, a case of bags)."""
    shelf_life_months: int
    supplier: int
    lot_tracked: bool = True
    damage_quantity: float = 1
    """What one breakage typically destroys (one vial, one bottle, one pen)."""


ITEMS: tuple[Item, ...] = (
    Item("PCM500T", "Paracetamol 500 mg tablet", "N02BE01", "tablet", "tablet", False, 100, 20, 36, 0, damage_quantity=20),
    Item("PCM120S", "Paracetamol 120 mg/5 ml oral suspension", "N02BE01", "oral suspension", "ml", False, 200, 100, 24, 0, damage_quantity=100),
    Item("IBU400T", "Ibuprofen 400 mg tablet", "M01AE01", "tablet", "tablet", False, 60, 30, 36, 0, damage_quantity=10),
    Item("AMX500C", "Amoxicillin 500 mg capsule", "J01CA04", "capsule", "capsule", False, 42, 21, 36, 1, damage_quantity=7),
    Item("AMX250S", "Amoxicillin 250 mg/5 ml powder for oral suspension", "J01CA04", "powder for oral suspension", "ml", False, 200, 100, 24, 1, damage_quantity=100),
    Item("AZI500T", "Azithromycin 500 mg tablet", "J01FA10", "tablet", "tablet", False, 6, 3, 36, 1, damage_quantity=3),
    Item("CRO1GV", "Ceftriaxone 1 g powder for injection", "J01DD04", "powder for injection", "vial", False, 14, 10, 36, 1),
    Item("MET500T", "Metformin 500 mg tablet", "A10BA02", "tablet", "tablet", False, 180, 30, 36, 4, damage_quantity=10),
    Item("INSG100", "Insulin glargine 100 IU/ml solution for injection", "A10AE04", "solution for injection", "ml", False, 30, 15, 24, 3, damage_quantity=3),
    Item("AML5T", "Amlodipine 5 mg tablet", "C08CA01", "tablet", "tablet", False, 90, 30, 36, 4, damage_quantity=10),
    Item("LOS50T", "Losartan 50 mg tablet", "C09CA01", "tablet", "tablet", False, 90, 30, 36, 4, damage_quantity=10),
    Item("ATV20T", "Atorvastatin 20 mg tablet", "C10AA05", "tablet", "tablet", False, 90, 30, 30, 4, damage_quantity=10),
    Item("LEV50T", "Levothyroxine 50 microgram tablet", "H03AA01", "tablet", "tablet", False, 100, 100, 24, 4, damage_quantity=10),
    Item("OME20C", "Omeprazole 20 mg capsule", "A02BC01", "capsule", "capsule", False, 56, 28, 36, 0, damage_quantity=14),
    Item("SAL100I", "Salbutamol 100 microgram/dose pressurised inhaler", "R03AC02", "pressurised inhalation", "inhaler", False, 3, 1, 24, 3),
    Item("ENX40S", "Enoxaparin 40 mg/0.4 ml prefilled syringe", "B01AB05", "solution for injection", "piece", False, 30, 10, 36, 3),
    Item("EPO4KS", "Epoetin alfa 4000 IU prefilled syringe", "B03XA01", "solution for injection", "piece", False, 12, 6, 24, 5),
    Item("TRM50C", "Tramadol 50 mg capsule", "N02AX02", "capsule", "capsule", True, 60, 20, 36, 2, damage_quantity=10),
    Item("MOR10T", "Morphine 10 mg tablet", "N02AA01", "prolonged-release tablet", "tablet", True, 60, 30, 36, 2, damage_quantity=10),
    Item("MOR10I", "Morphine 10 mg/ml solution for injection", "N02AA01", "solution for injection", "ml", True, 10, 10, 36, 2, damage_quantity=1),
    Item("FEN25P", "Fentanyl 25 microgram/hour transdermal patch", "N02AB03", "transdermal patch", "piece", True, 10, 5, 24, 5),
    Item("DZP5T", "Diazepam 5 mg tablet", "N05BA01", "tablet", "tablet", True, 30, 30, 36, 2, damage_quantity=10),
    Item("PGB75C", "Pregabalin 75 mg capsule", "N03AX16", "capsule", "capsule", True, 56, 14, 36, 2, damage_quantity=14),
    Item("CYC500V", "Cyclophosphamide 500 mg powder for injection", "L01AA01", "powder for injection", "vial", True, 4, 1, 36, 5),
    Item("TRZ150V", "Trastuzumab 150 mg powder for concentrate for infusion", "L01FD01", "powder for concentrate for infusion", "vial", True, 4, 1, 36, 5),
    Item("IMA400T", "Imatinib 400 mg tablet", "L01EA01", "film-coated tablet", "tablet", True, 30, 30, 36, 5, damage_quantity=10),
    Item("CAP500T", "Capecitabine 500 mg tablet", "L01BC06", "film-coated tablet", "tablet", True, 120, 120, 36, 5, damage_quantity=10),
    Item("NS500B", "Sodium chloride 0.9% solution for infusion 500 ml bag", "B05BB01", "solution for infusion", "piece", False, 6, 20, 24, 0),
    Item("SYR5", "Syringe 5 ml single use sterile", "", "", "piece", False, 30, 100, 36, 0, damage_quantity=5),
    Item("CAN20G", "Intravenous cannula 20G", "", "", "piece", False, 3, 50, 36, 0, damage_quantity=2),
    Item("GLV75", "Surgical gloves sterile size 7.5 (pair)", "", "", "piece", False, None, 50, 36, 0, lot_tracked=False, damage_quantity=5),
    Item("GAU10", "Gauze swab 10 x 10 cm sterile", "", "", "piece", False, None, 100, 36, 0, lot_tracked=False, damage_quantity=10),
)


@dataclass(frozen=True)
class Regimen:
    """One reason a patient is given an item: a diagnosis, a typical quantity and its duration.

    ``setting`` says where it is dispensed: ``any`` (the patient's own health centre or hospital,
    or a public pharmacy), ``hospital`` (only a hospital pharmacy: oncology, injections on the
    ward), ``procedure`` (a consumable used on the patient at a health centre or hospital, given
    without a prescription) or ``hospital-procedure`` (the same, at hospitals only). ``seasonal`` is the amplitude of a winter peak (respiratory infections).
    """

    item: str
    diagnosis: str
    chronic: bool
    quantities: tuple[float, ...]
    days_supply: int
    setting: str
    ages: str
    weight: float
    seasonal: float = 0.0

    @property
    def prescribed(self) -> bool:
        return "procedure" not in self.setting


CHRONIC_REGIMENS: tuple[Regimen, ...] = (
    Regimen("MET500T", "E11.9", True, (60, 60, 90, 120), 30, "any", "adult", 10),
    Regimen("INSG100", "E11.9", True, (6, 7.5, 9, 10.5, 12, 15), 30, "any", "adult", 3),
    Regimen("INSG100", "E10.9", True, (4.5, 6, 7.5, 9), 30, "any", "any", 1),
    Regimen("AML5T", "I10", True, (30,), 30, "any", "adult", 9),
    Regimen("LOS50T", "I10", True, (30, 60), 30, "any", "adult", 6),
    Regimen("ATV20T", "E78.5", True, (30,), 30, "any", "adult", 6),
    Regimen("LEV50T", "E03.9", True, (30, 60), 30, "any", "adult", 3),
    Regimen("OME20C", "K21.9", True, (28,), 28, "any", "adult", 3),
    Regimen("SAL100I", "J45.9", True, (1, 2), 30, "any", "any", 3, seasonal=0.3),
    Regimen("PGB75C", "G62.9", True, (56,), 28, "any", "adult", 1.5),
    Regimen("DZP5T", "F41.1", True, (30,), 30, "any", "adult", 0.8),
    Regimen("MOR10T", "C80.1", True, (60,), 30, "any", "adult", 0.4),
    Regimen("FEN25P", "C80.1", True, (10,), 30, "hospital", "adult", 0.2),
    Regimen("IMA400T", "C92.1", True, (30,), 30, "hospital", "adult", 0.15),
    Regimen("TRZ150V", "C50.9", True, (3, 4), 21, "hospital", "adult", 0.25),
    Regimen("CYC500V", "C50.9", True, (2,), 21, "hospital", "adult", 0.25),
    Regimen("CAP500T", "C18.9", True, (112,), 21, "hospital", "adult", 0.2),
    Regimen("EPO4KS", "N18.5", True, (8, 12), 28, "hospital", "adult", 0.4),
)

ACUTE_REGIMENS: tuple[Regimen, ...] = (
    Regimen("AMX500C", "J03.9", False, (21,), 7, "any", "adult", 9, seasonal=0.6),
    Regimen("AMX250S", "J03.9", False, (100, 150), 7, "any", "child", 6, seasonal=0.6),
    Regimen("AZI500T", "J18.9", False, (3,), 3, "any", "adult", 3, seasonal=0.7),
    Regimen("CRO1GV", "J18.9", False, (7, 10, 14), 7, "hospital", "any", 1.5, seasonal=0.7),
    Regimen("PCM500T", "R50.9", False, (20, 30), 5, "any", "adult", 11, seasonal=0.4),
    Regimen("PCM120S", "R50.9", False, (100,), 5, "any", "child", 6, seasonal=0.4),
    Regimen("IBU400T", "M54.5", False, (20, 30), 10, "any", "adult", 6),
    Regimen("TRM50C", "M54.5", False, (20,), 5, "any", "adult", 1.5),
    Regimen("TRM50C", "S82.2", False, (20, 30), 7, "hospital", "adult", 0.8),
    Regimen("MOR10I", "R52.0", False, (1, 2, 2.5, 3, 5), 1, "hospital", "adult", 1.2),
    Regimen("ENX40S", "I80.2", False, (10, 14), 10, "hospital", "adult", 1.0),
    Regimen("OME20C", "K29.7", False, (14, 28), 14, "any", "adult", 3),
    Regimen("GAU10", "", False, (5, 10, 20), 1, "procedure", "any", 4),
    Regimen("GLV75", "", False, (2, 4), 1, "procedure", "any", 3),
    Regimen("SYR5", "", False, (2, 3, 5), 1, "procedure", "any", 3),
    Regimen("CAN20G", "", False, (1,), 1, "hospital-procedure", "any", 1.5),
    Regimen("NS500B", "", False, (1, 2, 3), 1, "hospital-procedure", "any", 1.5),
)

NARCOTIC_ORAL = ("TRM50C", "PGB75C", "DZP5T", "MOR10T")
"""Controlled items that are worth diverting from a counter: the usual targets of forged or
missing prescriptions and of patients collecting from several facilities."""

DIVERSION_NONCONTROLLED = ("INSG100", "SAL100I", "OME20C", "ATV20T", "AMX500C", "MET500T")
"""Uncontrolled items valuable enough to be dispensed to invented patients and resold."""
