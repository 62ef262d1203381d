"""Files the app hands out: a safe name and the Content-Disposition that carries it.

A download's name is made of codes people typed (facility, item, flag): anything but letters,
digits, dot, dash and underscore becomes a dash, so no code can end the header's quoted string,
add a header, or name a path.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(*parts: str, ext: str) -> str:
    """``parts`` joined by dashes, each reduced to safe characters, with extension ``ext``."""
    name = "-".join(p for p in (_UNSAFE.sub("-", str(part)).strip(".-") for part in parts) if p) or "download"
    return f"{name[:150]}.{_UNSAFE.sub('', ext)}"


def attachment(*parts: str, ext: str) -> dict[str, str]:
    """The Content-Disposition header of a download named from ``parts``."""
    return {"Content-Disposition": f'attachment; filename="{safe_filename(*parts, ext=ext)}"'}


__all__ = ["safe_filename", "attachment"]
