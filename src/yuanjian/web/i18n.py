"""Portal translations: English message ids, Simplified Chinese from a gettext .po catalog (Babel).

The .po file is read at startup with Babel and compiled in memory, so no binary .mo file is kept
in the repository; the default language is zh-CN, English on request.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Callable
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = {"zh-CN": "zh_CN", "en": "en"}
LANGUAGE_NAMES = {"zh-CN": "中文", "en": "English"}


@cache
def translations(lang: str) -> gettext.NullTranslations:
    """The translations of a language code ("zh-CN" or "en")."""
    locale = LANGUAGES.get(lang, "zh_CN")
    po_path = LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po"
    if not po_path.exists():
        return gettext.NullTranslations()
    with po_path.open("rb") as fh:
        catalog = read_po(fh, locale=locale)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


def gettext_for(lang: str) -> Callable[[str], str]:
    """A ``_`` function for templates in the given language."""
    return translations(lang).gettext


def normalize(lang: str | None, default: str = "zh-CN") -> str:
    """Map a requested language to a supported code."""
    if not lang:
        return default
    lang = lang.strip()
    if lang.lower().startswith("en"):
        return "en"
    if lang.lower().startswith("zh"):
        return "zh-CN"
    return default
