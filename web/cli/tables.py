"""Tables the `dawa` commands print, made to fit the terminal they are printed in.

A terminal of 80 columns is the narrowest we write for. Identifiers (codes, user names, ids) are
never cut across lines: a reader copies them into the next command. Free text (names, reasons,
titles) wraps instead, and a flag's reason goes on lines of its own below the flag's figures,
across the whole width, when the terminal is too narrow to hold it beside them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from web import words
from web.cli import language as cli_language
from web.messages import reason_text

WIDE = 120
"""From this many columns a flag's reason is a column of its own; below, it goes under the flag."""

SHORT_ID = 10
"""Characters of a flag id shown (more when two shown ids would read alike); commands that take
a flag accept any prefix that names one flag."""


def short_ids(ids: Sequence[str], minimum: int = SHORT_ID) -> dict[str, str]:
    """Each id cut to the shortest length (at least ``minimum``) at which the shown ones differ."""
    width = minimum
    while width < max((len(i) for i in ids), default=0) and len({i[:width] for i in ids}) < len(set(ids)):
        width += 1
    return {i: i[:width] for i in ids}


def table(title: str, columns: Iterable[tuple[str, str]], **kwargs) -> Table:
    """A table whose columns are ``(header, how)``: ``id`` never wraps, ``num`` is right-aligned
    and never wraps, ``text`` wraps at word boundaries (a long word folds)."""
    t = Table(title=cli_language.t(title), **kwargs)
    for header, how in columns:
        header = cli_language.t(header)
        if how == "text":
            t.add_column(header, overflow="fold", ratio=1)
        else:
            t.add_column(header, no_wrap=True, justify="right" if how == "num" else "left")
    return t


def flag_table(console: Console, rows: Sequence, title: str, lang: str | None = None) -> None:
    """Flags, most suspicious first: id, score, severity, facility and status on one line; the reason
    (in ``lang``) beside them on a wide terminal, else wrapped below them."""
    lang = lang or cli_language.current()
    shown = short_ids([r.flag_id for r in rows])
    wide = console.width >= WIDE
    sev = {r.severity: cli_language.label(words.SEVERITY, r.severity) for r in rows}
    status = {r.status: cli_language.label(words.FLAG_STATUS, r.status) for r in rows}
    t = table(title, [("flag", "id"), ("score", "num"), ("sev", "id"), ("facility", "id"), ("status", "id")]
              + ([("reason", "text")] if wide else []), show_lines=wide)
    if wide:
        for r in rows:
            t.add_row(shown[r.flag_id], f"{r.score:.2f}", sev[r.severity], r.facility_code or "-", status[r.status],
                      reason_text(r, lang))
        console.print(t)
        return
    headers = [cli_language.t(h) for h in ("flag", "score", "sev", "facility", "status")]
    widths = _widths(rows, shown, headers, sev)
    console.print(Text(title, style="italic"), justify="center", highlight=False)
    console.print(Text(_line(headers, widths), style="bold"), highlight=False)
    for r in rows:
        cells = (shown[r.flag_id], f"{r.score:.2f}", sev[r.severity], r.facility_code or "-", status[r.status])
        console.print(Text(_line(cells, widths), no_wrap=True, overflow="ellipsis"), highlight=False)
        console.print(Padding(Text(reason_text(r, lang)), (0, 0, 1, 2)), highlight=False)


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    first, score, *rest = cells
    return "  ".join([first.ljust(widths[0]), score.rjust(widths[1]),
                      *(c.ljust(w) for c, w in zip(rest[:-1], widths[2:])), rest[-1]])


def _widths(rows: Sequence, shown: dict[str, str], headers: Sequence[str], sev: dict[str, str]) -> list[int]:
    return [max([len(headers[0])] + [len(shown[r.flag_id]) for r in rows]), max(5, len(headers[1])),
            max([len(headers[2])] + [len(sev[r.severity]) for r in rows]),
            max([len(headers[3])] + [len(r.facility_code or "-") for r in rows])]


__all__ = ["WIDE", "SHORT_ID", "short_ids", "table", "flag_table"]
