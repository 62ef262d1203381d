"""Logs name patients by pseudonym only.

The access log writes every request's path and query, and an error is logged with the path it
happened on. Dawa's own pages and API put no health card in a URL (the history API names a patient
by pseudonym, the counter's prescription look-up sends the card in its body), but a client may
still send one (``/api/v1/patients/<card>/...``, ``?health_card_id=<card>``), and that would put
health-card numbers in plain text into files that are copied, shipped and kept far longer than the
data they describe. ``PatientFilter`` rewrites those parts of every record of the loggers it is put
on to the card's pseudonym (stock.pseudonyms); a pseudonym already there is kept.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote, unquote

from stock.pseudonyms import is_pseudonym, pseudonym

LOGGERS = ("uvicorn.access", "uvicorn.error", "dawa.web")

_PATH = re.compile(r"(/patients/)([^/?#\s\"]+)")
_QUERY = re.compile(r"((?:^|[?&\s])health_card_id=)([^&#\s\"]*)")


class PatientFilter(logging.Filter):
    def __init__(self, key: str):
        super().__init__()
        self.key = key

    def _clean(self, text: str) -> str:
        def named(value: str) -> str:  # a pseudonym already (the history API's path) stays as it is
            return value if is_pseudonym(value) else pseudonym(value, self.key)

        def path(m: re.Match) -> str:
            return m.group(1) + named(unquote(m.group(2)))

        def query(m: re.Match) -> str:
            value = unquote(m.group(2).replace("+", " "))
            return m.group(1) + (quote(named(value)) if value.strip() else "")

        return _QUERY.sub(query, _PATH.sub(path, text))

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self._clean(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._clean(a) if isinstance(a, str) else a for a in record.args)
        return True


def install(key: str) -> PatientFilter:
    """Put one filter (under ``key``) on the app's loggers, replacing one put there before."""
    new = PatientFilter(key)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, PatientFilter)]:
            logger.removeFilter(old)
        logger.addFilter(new)
    return new


__all__ = ["PatientFilter", "install", "LOGGERS"]
