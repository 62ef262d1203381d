"""What alerts say, in English, French and Arabic.

Each kind of alert has a title and a body per language, filled from the alert's parameters
(already formatted as text). Detectors' reasons are quoted as they were written. The HTML form of a
message is built from the same text, escaped, right-to-left for Arabic.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from stock.models import LANGUAGES

TEMPLATES: dict[str, dict[str, tuple[str, str]]] = {
    "flag": {
        "en": ("New {severity} flag at {facility}",
               "{reason}\nScore {score}. Flag {flag_id}, raised by {detectors}."),
        "fr": ("Nouveau signalement ({severity}) à {facility}",
               "{reason}\nScore {score}. Signalement {flag_id}, levé par {detectors}."),
        "ar": ("تنبيه جديد ({severity}) في {facility}",
               "{reason}\nالدرجة {score}. التنبيه {flag_id}، أطلقه {detectors}."),
    },
    "stockout": {
        "en": ("Stockout: {item} at {facility}",
               "{item_name} ({item}) is out of stock at {facility_name} ({facility})."),
        "fr": ("Rupture de stock : {item} à {facility}",
               "{item_name} ({item}) est en rupture de stock à {facility_name} ({facility})."),
        "ar": ("نفاد المخزون: {item} في {facility}",
               "نفد مخزون {item_name} ({item}) في {facility_name} ({facility})."),
    },
    "low_stock": {
        "en": ("Low stock: {item} at {facility}",
               "{item_name} at {facility_name}: {on_hand} {unit} on hand, {months} months of stock "
               "at an average use of {amc} {unit} a month."),
        "fr": ("Stock bas : {item} à {facility}",
               "{item_name} à {facility_name} : {on_hand} {unit} en stock, {months} mois de stock "
               "pour une consommation moyenne de {amc} {unit} par mois."),
        "ar": ("مخزون منخفض: {item} في {facility}",
               "{item_name} في {facility_name}: {on_hand} {unit} في المخزون، تكفي {months} شهر "
               "بمعدل استهلاك {amc} {unit} شهريًا."),
    },
    "expiring": {
        "en": ("Lot {lot} of {item} expires within {days} days at {facility}",
               "Lot {lot} of {item_name} at {facility_name} expires on {expiry}: {on_hand} {unit} on hand."),
        "fr": ("Le lot {lot} de {item} expire dans moins de {days} jours à {facility}",
               "Le lot {lot} de {item_name} à {facility_name} expire le {expiry} : {on_hand} {unit} en stock."),
        "ar": ("الدفعة {lot} من {item} تنتهي صلاحيتها خلال {days} يومًا في {facility}",
               "الدفعة {lot} من {item_name} في {facility_name} تنتهي صلاحيتها في {expiry}: "
               "{on_hand} {unit} في المخزون."),
    },
    "expired": {
        "en": ("Lot {lot} of {item} expired on {expiry} at {facility}",
               "Lot {lot} of {item_name} at {facility_name} expired on {expiry}: {on_hand} {unit} still on hand, "
               "to be written off."),
        "fr": ("Le lot {lot} de {item} a expiré le {expiry} à {facility}",
               "Le lot {lot} de {item_name} à {facility_name} a expiré le {expiry} : {on_hand} {unit} encore en "
               "stock, à sortir en perte."),
        "ar": ("الدفعة {lot} من {item} انتهت صلاحيتها في {expiry} في {facility}",
               "الدفعة {lot} من {item_name} في {facility_name} انتهت صلاحيتها في {expiry}: لا يزال {on_hand} {unit} "
               "في المخزون، ويجب شطبها."),
    },
    "count_short": {
        "en": ("Count short of book: {item} at {facility}",
               "A count on {date} at {facility_name} found {counted} {unit} of {item_name} where the "
               "book said {book}: {short} {unit} short. Entry {entry_id}, recorded by {recorded_by}."),
        "fr": ("Inventaire inférieur au stock théorique : {item} à {facility}",
               "Un inventaire du {date} à {facility_name} a compté {counted} {unit} de {item_name} "
               "pour un stock théorique de {book} : il manque {short} {unit}. Écriture {entry_id}, "
               "saisie par {recorded_by}."),
        "ar": ("جرد أقل من الرصيد الدفتري: {item} في {facility}",
               "وجد جرد بتاريخ {date} في {facility_name} {counted} {unit} من {item_name} بينما "
               "الرصيد الدفتري {book}: نقص {short} {unit}. القيد {entry_id}، سجله {recorded_by}."),
    },
    "chain_broken": {
        "en": ("Ledger hash chain broken at {facility}",
               "Verification of the ledger found: {problem}. Entries may have been altered, deleted "
               "or inserted outside the application."),
        "fr": ("Chaîne d'empreintes du registre rompue à {facility}",
               "La vérification du registre a trouvé : {problem}. Des écritures ont pu être modifiées, "
               "supprimées ou insérées hors de l'application."),
        "ar": ("انكسار سلسلة التجزئة في السجل في {facility}",
               "وجد التحقق من السجل: {problem}. ربما عُدّلت قيود أو حُذفت أو أُدرجت خارج التطبيق."),
    },
    "heads_witnessed": {
        "en": ("Signed ledger and audit chain heads, {signed_at}",
               "Keep this message: the signed heads below prove, to anyone with Dawa's public key, what the "
               "ledger and the audit trail held at {signed_at} ({file}). `dawa ledger verify --against` a "
               "copy of them shows any later rewrite.\n\n{heads}"),
        "fr": ("Têtes signées des chaînes du registre et de l'audit, {signed_at}",
               "Conservez ce message : les têtes signées ci-dessous prouvent, à qui détient la clé publique "
               "de Dawa, ce que contenaient le registre et la piste d'audit le {signed_at} ({file}). "
               "`dawa ledger verify --against` une copie révèle toute réécriture ultérieure.\n\n{heads}"),
        "ar": ("رؤوس سلاسل السجل والتدقيق الموقّعة، {signed_at}",
               "احتفظ بهذه الرسالة: تثبت الرؤوس الموقّعة أدناه، لكل من لديه المفتاح العام لـ Dawa، ما كان في "
               "السجل وسجل التدقيق في {signed_at} ({file}). يكشف `dawa ledger verify --against` بنسخة منها "
               "أي إعادة كتابة لاحقة.\n\n{heads}"),
    },
    "audit_broken": {
        "en": ("Audit trail hash chain broken",
               "Verification of the audit trail found: {problem}. Records may have been altered, deleted or "
               "inserted outside the application."),
        "fr": ("Chaîne d'empreintes de la piste d'audit rompue",
               "La vérification de la piste d'audit a trouvé : {problem}. Des enregistrements ont pu être "
               "modifiés, supprimés ou insérés hors de l'application."),
        "ar": ("انكسار سلسلة التجزئة في سجل التدقيق",
               "وجد التحقق من سجل التدقيق: {problem}. ربما عُدّلت سجلات أو حُذفت أو أُدرجت خارج التطبيق."),
    },
    "drift": {
        "en": ("Stock balance differs from the ledger at {facility}",
               "{problem}. Balances were changed outside the ledger's write path."),
        "fr": ("Le solde de stock diffère du registre à {facility}",
               "{problem}. Des soldes ont été modifiés hors du circuit d'écriture du registre."),
        "ar": ("رصيد المخزون يختلف عن السجل في {facility}",
               "{problem}. عُدّلت الأرصدة خارج مسار الكتابة في السجل."),
    },
    "batch": {
        "en": ("Dawa: {count} new alerts", "New since the last run:\n\n{lines}"),
        "fr": ("Dawa : {count} nouvelles alertes", "Nouveau depuis le dernier passage :\n\n{lines}"),
        "ar": ("دواء: تنبيهات جديدة ({count})", "الجديد منذ آخر تشغيل:\n\n{lines}"),
    },
    "batch_more": {
        "en": ("", "- and {more} more: see them all in Dawa."),
        "fr": ("", "- et {more} autres : la liste complète est dans Dawa."),
        "ar": ("", "- و{more} غيرها: القائمة الكاملة في دواء."),
    },
    "digest": {
        "en": ("Dawa weekly digest: {count} alerts", "Alerts held for your digest since {since}:\n\n{lines}"),
        "fr": ("Résumé hebdomadaire Dawa : {count} alertes",
               "Alertes réservées pour votre résumé depuis le {since} :\n\n{lines}"),
        "ar": ("الملخص الأسبوعي من دواء: {count} تنبيهات", "التنبيهات المحفوظة لملخصك منذ {since}:\n\n{lines}"),
    },
}

SEVERITY_WORDS = {
    "en": {"low": "low", "medium": "medium", "high": "high"},
    "fr": {"low": "faible", "medium": "moyenne", "high": "élevée"},
    "ar": {"low": "منخفض", "medium": "متوسط", "high": "مرتفع"},
}

OPEN_LINK = {"en": "Open in Dawa", "fr": "Ouvrir dans Dawa", "ar": "افتح في دواء"}


@dataclass(frozen=True)
class Message:
    language: str
    title: str
    body: str

    def html(self, link: str | None = None) -> str:
        direction = "rtl" if self.language == "ar" else "ltr"
        paragraphs = "".join(f"<p>{escape(p).replace(chr(10), '<br>')}</p>"
                             for p in self.body.split("\n\n"))
        anchor = (f'<p><a href="{escape(link, quote=True)}">{escape(OPEN_LINK[self.language])}</a></p>'
                  if link else "")
        return (f'<!doctype html><html lang="{self.language}" dir="{direction}"><head><meta charset="utf-8">'
                f"<title>{escape(self.title)}</title></head><body><h1>{escape(self.title)}</h1>"
                f"{paragraphs}{anchor}</body></html>")

    def text(self, link: str | None = None) -> str:
        return self.body + (f"\n\n{OPEN_LINK[self.language]}: {link}" if link else "") + "\n"


def render(kind: str, language: str, params: dict[str, str]) -> Message:
    """The message for ``kind`` in ``language`` (English for a language not offered)."""
    language = language if language in LANGUAGES else "en"
    title, body = TEMPLATES[kind][language]
    values = dict(params)
    if "severity" in values:
        values["severity"] = SEVERITY_WORDS[language].get(values["severity"], values["severity"])
    return Message(language, title.format(**values), body.format(**values))
