"""The names of the app's enumerated values, in the reader's language: one place for each enum.

A role, a facility kind, a movement, a flag's status, a detector, an audit action, a loss reason, a
requisition's step, a unit: the database holds the English code (``facility_manager``,
``transfer_out``, ``open``); pages, e-mails and the CLI show ``label(lang, ENUM, code)``. Words
that English spells like a verb or another word carry a message context (``pgettext("status",
"Open")`` is "Ouvert"/"مفتوح", not the verb "Ouvrir"). A code without a label (a value added later,
an old audit action) is shown as itself, isolated for bidi by the caller.

Counts in a unit go through :func:`quantity`, which picks the plural form of the reader's
language ("1 tablet", "16 tablets"; Arabic's six forms).

``N_("...")``, ``NP_("context", "...")`` and ``NN_("singular", "plural")`` only mark a message for
``pybabel extract`` (web.templating.extract_server_messages finds them); translation happens when
a label is asked for, in the reader's language.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, NamedTuple

from babel import numbers as babel_numbers

from anomaly.models import FLAG_ACTIONS, SEVERITIES, STATUSES
from stock.models import ENTRY_KINDS, FACILITY_KINDS, ROLES
from web.catalogs import RTL_LANGUAGES, translations


def N_(message: str) -> tuple[None, str]:
    return None, message


def NP_(context: str, message: str) -> tuple[str, str]:
    return context, message


def NN_(singular: str, plural: str) -> tuple[str, str]:
    return singular, plural


ROLE = "role"
FACILITY_KIND = "facility_kind"
MOVEMENT = "movement"
LOSS_REASON = "loss_reason"
FLAG_STATUS = "flag_status"
SEVERITY = "severity"
FLAG_ACTION = "flag_action"
DETECTOR = "detector"
AUDIT_ACTION = "audit_action"
REQUISITION_STATUS = "requisition_status"
REQUISITION_STEP = "requisition_step"
STOCK_STATUS = "stock_status"
DHIS2_STATUS = "dhis2_status"
UNIT = "unit"
NATIONAL_DATA = "national_data"
OBJECT_TYPE = "object_type"
FLAG_SUBJECT = "flag_subject"

LABELS: dict[str, dict[str, tuple[str | None, str]]] = {
    ROLE: {
        "pharmacist": N_("Pharmacist"),
        "facility_manager": N_("Facility manager"),
        "auditor": N_("Auditor"),
        "admin": N_("Administrator"),
    },
    FACILITY_KIND: {
        "hospital": N_("Hospital"),
        "health_center": N_("Health centre"),
        "pharmacy": N_("Pharmacy"),
        "warehouse": N_("Warehouse"),
    },
    MOVEMENT: {
        "dispense": N_("Dispense"),
        "receipt": N_("Receipt"),
        "transfer_out": N_("Transfer sent"),
        "transfer_in": N_("Transfer received"),
        "loss": N_("Loss"),
        "count": N_("Count"),
        "adjustment": N_("Adjustment"),
    },
    LOSS_REASON: {
        "expired": NP_("loss reason", "Expired"),
        "damaged": NP_("loss reason", "Damaged"),
        "theft": NP_("loss reason", "Theft"),
        "lost": NP_("loss reason", "Lost"),
        "recalled": NP_("loss reason", "Recalled"),
        "correction": NP_("loss reason", "Correction"),
        "emergency": NP_("loss reason", "Emergency"),
        "destruction": NP_("loss reason", "Destruction"),
        "short on arrival": NP_("loss reason", "Short on arrival"),
    },
    FLAG_STATUS: {
        "open": NP_("status", "Open"),
        "assigned": NP_("status", "Assigned"),
        "confirmed": NP_("status", "Confirmed"),
        "dismissed": NP_("status", "Dismissed"),
        "escalated": NP_("status", "Escalated"),
    },
    SEVERITY: {
        "high": NP_("severity", "High"),
        "medium": NP_("severity", "Medium"),
        "low": NP_("severity", "Low"),
    },
    FLAG_ACTION: {
        "assign": NP_("flag action", "Assign"),
        "confirm": NP_("flag action", "Confirm"),
        "dismiss": NP_("flag action", "Dismiss as false positive"),
        "escalate": NP_("flag action", "Escalate"),
        "comment": NP_("flag action", "Comment"),
        "reopen": NP_("flag action", "Reopened"),
    },
    DETECTOR: {  # what each detector looks for (anomaly.detectors.ALL)
        "prescriptions": N_("Beyond the prescription or ceiling"),
        "no_prescription": N_("Controlled item without prescription"),
        "patients": N_("Unknown or deceased patient"),
        "duplicates": N_("Same patient at several facilities"),
        "serials": N_("Pack dispensed twice"),
        "counts": N_("Count short of the book"),
        "writeoffs": N_("Write-offs far from expiry"),
        "transfers": N_("Transfer lost or short"),
        "consumption": N_("Unusual consumption"),
        "sustained": N_("Sustained rise per patient"),
        "users": N_("User against colleagues"),
        "overfill": N_("Filling beyond colleagues"),
        "circles": N_("Repeat patients without prescription"),
        "afterhours": N_("Controlled dispensing after hours"),
        "corrected": N_("Often corrected"),
        "requisitions": N_("Requisitions out of line"),
        "isolation": N_("Outlier (isolation forest)"),
    },
    AUDIT_ACTION: {
        "api_token_created": N_("API token created"),
        "api_token_revoked": N_("API token revoked"),
        "clear_cards_exported": N_("Health cards exported in clear"),
        "export_read": N_("Export read"),
        "facility_created": N_("Facility created"),
        "facility_updated": N_("Facility changed"),
        "fhir_export": N_("FHIR export"),
        "fhir_import": N_("FHIR import"),
        "flag_exported": N_("Case exported"),
        "flag_read": N_("Case read"),
        "flags_read": N_("Flag queue read"),
        "item_updated": N_("Item changed"),
        "ledger_entry": N_("Ledger entry"),
        "ledger_post": N_("Movements posted"),
        "ledger_reverse": N_("Entry reversed"),
        "ledger_verified": N_("Ledger verified"),
        "login": N_("Logged in"),
        "login_failed": N_("Login failed"),
        "login_refused": N_("Login refused"),
        "logout": N_("Logged out"),
        "notification_acknowledged": N_("Notification acknowledged"),
        "patient_history_read": N_("Patient history read"),
        "patient_prescriptions_read": N_("Patient prescriptions read"),
        "stock_card_read": N_("Stock card read"),
        "today_read": N_("Today's entries read"),
        "user_created": N_("User created"),
        "user_disabled": N_("User disabled"),
        "user_enabled": N_("User enabled"),
        "user_language_changed": N_("Language changed"),
        "user_password_set": N_("Password set"),
        "user_updated": N_("User changed"),
    },
    REQUISITION_STATUS: {
        "draft": N_("Draft"),
        "submitted": N_("Submitted"),
        "approved": N_("Approved"),
        "rejected": N_("Rejected"),
        "shipped": N_("Shipped"),
        "received": N_("Received"),
    },
    REQUISITION_STEP: {
        "prepared": N_("Prepared"),
        "changed": N_("Changed"),
        "submitted": N_("Submitted"),
        "approved": N_("Approved"),
        "rejected": N_("Rejected"),
        "shipped": N_("Shipped"),
        "received": N_("Received"),
    },
    STOCK_STATUS: {
        "emergency": N_("At emergency point"),
        "below_min": N_("Below minimum"),
        "above_max": N_("Above maximum"),
        "ok": N_("Within levels"),
        "no_use": N_("No consumption"),
    },
    DHIS2_STATUS: {
        "SUCCESS": N_("Accepted"),
        "WARNING": N_("Accepted in part"),
        "ERROR": N_("Refused"),
        "FAILED": N_("Not delivered"),
    },
    FLAG_SUBJECT: {  # what a flag is about
        "entry": N_("Ledger entry"),
        "patient": N_("Patient"),
        "user": N_("User"),
        "facility_item": N_("Item at a facility"),
        "transfer": N_("Transfer"),
        "facility": N_("Facility"),
    },
    OBJECT_TYPE: {  # what an audit record is about
        "api_token": N_("API token"),
        "export": N_("Export"),
        "facility": N_("Facility"),
        "flag": N_("Flag"),
        "flags": N_("Flags"),
        "item": N_("Item"),
        "ledger": N_("Ledger"),
        "ledger_entry": N_("Ledger entry"),
        "notification": N_("Notification"),
        "patient": N_("Patient"),
        "patients": N_("Patients"),
        "requisition": N_("Requisition"),
        "stock_card": N_("Stock card"),
        "user": N_("User"),
    },
    NATIONAL_DATA: {
        "national master data": N_("national master data"),
        "facilities": N_("facilities"),
        "an item's ceiling or controlled flag": N_("an item's ceiling or controlled flag"),
    },
    UNIT: {
        "tablet": NP_("unit", "tablet"),
        "capsule": NP_("unit", "capsule"),
        "ml": NP_("unit", "ml"),
        "mg": NP_("unit", "mg"),
        "piece": NP_("unit", "piece"),
        "vial": NP_("unit", "vial"),
        "inhaler": NP_("unit", "inhaler"),
        "box": NP_("unit", "box"),
        "ampoule": NP_("unit", "ampoule"),
        "sachet": NP_("unit", "sachet"),
        "bottle": NP_("unit", "bottle"),
        "tube": NP_("unit", "tube"),
        "dose": NP_("unit", "dose"),
    },
}

# A count in a unit: "%(num)s" is the number already formatted for the reader's locale.
QUANTITIES: dict[str, tuple[str, str]] = {
    "tablet": NN_("%(num)s tablet", "%(num)s tablets"),
    "capsule": NN_("%(num)s capsule", "%(num)s capsules"),
    "ml": NN_("%(num)s ml", "%(num)s ml"),
    "mg": NN_("%(num)s mg", "%(num)s mg"),
    "piece": NN_("%(num)s piece", "%(num)s pieces"),
    "vial": NN_("%(num)s vial", "%(num)s vials"),
    "inhaler": NN_("%(num)s inhaler", "%(num)s inhalers"),
    "box": NN_("%(num)s box", "%(num)s boxes"),
    "ampoule": NN_("%(num)s ampoule", "%(num)s ampoules"),
    "sachet": NN_("%(num)s sachet", "%(num)s sachets"),
    "bottle": NN_("%(num)s bottle", "%(num)s bottles"),
    "tube": NN_("%(num)s tube", "%(num)s tubes"),
    "dose": NN_("%(num)s dose", "%(num)s doses"),
}
MONTHS = NN_("%(num)s month", "%(num)s months")

# Every enum's codes, for checks that no code is left without its label.
ENUM_VALUES: dict[str, tuple[str, ...]] = {
    ROLE: ROLES, FACILITY_KIND: FACILITY_KINDS, MOVEMENT: ENTRY_KINDS, FLAG_STATUS: STATUSES,
    SEVERITY: SEVERITIES, FLAG_ACTION: FLAG_ACTIONS,
    **{name: tuple(values) for name, values in LABELS.items()
       if name not in (ROLE, FACILITY_KIND, MOVEMENT, FLAG_STATUS, SEVERITY, FLAG_ACTION)},
}


def label(lang: str, enum: str, code: Any) -> str:
    """The name of ``code`` in ``lang``; the code itself when the enum has no label for it."""
    if code is None:
        return ""
    found = LABELS.get(enum, {}).get(str(code))
    if found is None:
        return str(code)
    context, message = found
    catalog = translations(lang)
    return catalog.pgettext(context, message) if context else catalog.gettext(message)


def labels(lang: str, enum: str) -> dict[str, str]:
    """Every code of ``enum`` with its name in ``lang`` (for a select's options)."""
    return {code: label(lang, enum, code) for code in LABELS[enum]}


def plural_count(n: Any) -> int:
    """The integer a plural rule is chosen by: whole numbers as themselves, any fraction by the
    form of "many" (2.5 tablets, 0.5 months), which is the plural in en, fr and ar alike."""
    if n is None or n == "":
        return 0
    value = Decimal(str(n)) if not isinstance(n, Decimal) else n
    if value == value.to_integral_value():
        return abs(int(value))
    return 100


def quantity(lang: str, n: Any, unit: str | None, formatted: str | None = None) -> str:
    """``n`` in ``unit`` with the plural the reader's language needs: "16 tablets", "16 comprimés"."""
    num = formatted if formatted is not None else format_number(lang, n)
    pair = QUANTITIES.get(str(unit)) if unit else None
    if pair is None:
        return f"{num} {label(lang, UNIT, unit)}".strip() if unit else num
    return translations(lang).ngettext(pair[0], pair[1], plural_count(n)) % {"num": num}


def months(lang: str, n: Any, formatted: str | None = None) -> str:
    num = formatted if formatted is not None else format_number(lang, n)
    return translations(lang).ngettext(MONTHS[0], MONTHS[1], plural_count(n)) % {"num": num}



# --- messages with parameters ------------------------------------------------------------------

OR_PATTERN = "%(first)s or %(second)s"


class Term(NamedTuple):
    """A parameter of a message that is an enum's code, named in the reader's language."""

    enum: str
    code: str


def _param(lang: str, value: Any, named: bool, isolated: bool) -> str:
    if isinstance(value, tuple) and not isinstance(value, Term):
        parts = [_param(lang, v, named, isolated) for v in value]
        text = parts[0] if parts else ""
        for part in parts[1:]:
            text = (pgettext(lang, "list", OR_PATTERN, first=text, second=part) if named
                    else OR_PATTERN % {"first": text, "second": part})
        return text
    if isinstance(value, Term):
        return label(lang, value.enum, value.code) if named else value.code
    return isolate(value) if isolated else str(value)


def render_message(lang: str, message: str, params: dict, isolate: bool = False) -> str:
    """``message`` (a msgid with ``%(name)s`` placeholders) in ``lang``, filled with ``params``.

    Without ``isolate`` it is the English text the API and logs give, with codes as they are
    (``this needs the role auditor or admin; you are pharmacist``); with it, the words a page
    shows: enum codes named in ``lang`` and, in a right-to-left language, every other value
    isolated for bidi.
    """
    text = translations(lang).gettext(message) if isolate else message
    isolated = isolate and lang in RTL_LANGUAGES
    return text % {k: _param(lang, v, isolate, isolated) for k, v in params.items()} if params else text


# --- bidi ------------------------------------------------------------------------------------

FSI, LRI, PDI = "\u2068", "\u2066", "\u2069"


def isolate(text: Any) -> str:
    """``text`` isolated for bidi in plain text (a CLI table, an e-mail): a code, id or number
    keeps its own order inside a right-to-left sentence, and does not reorder its neighbours."""
    if text is None or text == "":
        return ""
    return f"{FSI}{text}{PDI}"


def signed(lang: str, text: str) -> str:
    """A negative number kept as "-30" inside right-to-left text (not "30-"): isolated LTR."""
    return f"{LRI}{text}{PDI}" if lang in RTL_LANGUAGES and text.startswith(("-", "\u2212")) else text


# A short date or time is never month-first (7/12/26 reads as 12 July in Libya): ISO everywhere.
SHORT_DATE, SHORT_DATETIME = "yyyy-MM-dd", "yyyy-MM-dd HH:mm"


def pgettext(lang: str, context: str, message: str, **variables: Any) -> str:
    """Translate ``message`` in its ``context`` ("status", "Open") for ``lang``."""
    text = translations(lang).pgettext(context, message)
    return text % variables if variables else text


def bdi(value: Any):
    """``value`` in a ``<bdi>`` element (escaped): the HTML form of :func:`isolate`."""
    from markupsafe import Markup, escape

    if value is None or value == "":
        return Markup("")
    return Markup("<bdi>%s</bdi>") % escape(value)


def format_number(lang: str, value: Any) -> str:
    """A number as ``lang`` writes it (digit grouping, decimal sign), its sign kept in place."""
    if value is None or value == "":
        return ""
    return signed(lang, babel_numbers.format_decimal(value, locale=lang))


__all__ = ["LABELS", "ENUM_VALUES", "label", "labels", "quantity", "months", "plural_count", "format_number", "N_", "NP_", "NN_"]
