"""The message catalogs: which languages Dawa speaks, and each one's compiled translations.

Below both the page templating (web.templating) and the rendering of stored messages
(web.messages), which read the same catalogs.
"""

from __future__ import annotations

from contextvars import ContextVar
from functools import lru_cache
from gettext import NullTranslations
from pathlib import Path
from typing import Any

from babel.support import Translations

LOCALE_DIR = Path(__file__).resolve().parent / "locale"

LANGUAGES: tuple[str, ...] = ("en", "fr", "ar")
DEFAULT_LANGUAGE = "en"
RTL_LANGUAGES = frozenset({"ar"})
# Each language's own name, shown in the language switcher whatever the page's language.
LANGUAGE_NAMES = {"en": "English", "fr": "Français", "ar": "العربية"}

# The language of the page being rendered, for template globals and filters used where no
# request context reaches (a macro imported without context).
_current_lang: ContextVar[str] = ContextVar("dawa_lang", default=DEFAULT_LANGUAGE)


@lru_cache(maxsize=None)
def translations(lang: str) -> NullTranslations:
    """The compiled catalog for ``lang``; English is the source language and needs none."""
    if lang not in LANGUAGES or lang == DEFAULT_LANGUAGE:
        return NullTranslations()
    return Translations.load(str(LOCALE_DIR), [lang], domain="messages")


def _lang_of(context: Any = None) -> str:
    if context is not None:
        lang = context.get("lang")
        if lang in LANGUAGES:
            return lang
    return _current_lang.get()
