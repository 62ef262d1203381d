"""Words detectors' reasons share: kinds of facility counted, "x times". Each is a message
(stock.messages), so it reads in the reader's language with the plural the count needs."""

from __future__ import annotations

from stock.messages import Message, code, count, msg, nmsg


def facility_kinds(kind: str, n: int, *, other: bool = False) -> Message:
    """'3 health centres', '1 hospital', or with ``other``: '3 other health centres'."""
    c = count(n)
    if other:
        forms = {
            "hospital": lambda: nmsg("%(n)s other hospital", "%(n)s other hospitals", n=c),
            "health_center": lambda: nmsg("%(n)s other health centre", "%(n)s other health centres", n=c),
            "pharmacy": lambda: nmsg("%(n)s other pharmacy", "%(n)s other pharmacies", n=c),
            "warehouse": lambda: nmsg("%(n)s other warehouse", "%(n)s other warehouses", n=c),
        }
    else:
        forms = {
            "hospital": lambda: nmsg("%(n)s hospital", "%(n)s hospitals", n=c),
            "health_center": lambda: nmsg("%(n)s health centre", "%(n)s health centres", n=c),
            "pharmacy": lambda: nmsg("%(n)s pharmacy", "%(n)s pharmacies", n=c),
            "warehouse": lambda: nmsg("%(n)s warehouse", "%(n)s warehouses", n=c),
        }
    if kind in forms:
        return forms[kind]()
    return msg("%(n)s %(kind)s", n=c, kind=code(kind))


def other_kind(kind: str) -> Message:
    """'other hospitals': the facilities of a kind, uncounted."""
    forms = {"hospital": lambda: msg("other hospitals"), "health_center": lambda: msg("other health centres"),
             "pharmacy": lambda: msg("other pharmacies"), "warehouse": lambda: msg("other warehouses")}
    return forms[kind]() if kind in forms else msg("other %(kind)s", kind=code(kind))


def times(n: int) -> Message:
    return nmsg("%(n)s time", "%(n)s times", n=count(n))
