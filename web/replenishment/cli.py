"""`dawa packs`: the pack sizes items come in (base units per pack, and the pack's GTIN)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import typer

packs_app = typer.Typer(help="Pack sizes of items: entered in packs, stored in base units.", no_args_is_help=True)


@packs_app.command("add")
def add(item: Annotated[str, typer.Argument(help="Item code")],
        units: Annotated[str, typer.Argument(help="Base units in one pack, e.g. 144")],
        name: Annotated[str, typer.Argument(help="The pack's name, e.g. 'box of 144'")],
        gtin: Annotated[str | None, typer.Option(help="The GTIN printed on the pack")] = None,
        db: Annotated[str | None, typer.Option(help="Database URL (default: DAWA_DATABASE_URL)")] = None):
    """Declare a pack size of an item."""
    from stock.db import session_factory
    from stock.errors import DawaError
    from stock.quantities import parse_quantity
    from stock.requisitions.packs import add_pack
    from web.cli.common import _engine, _fail

    try:
        quantity = parse_quantity(units)
    except ValueError as exc:
        _fail(f"units: {exc}")
    with session_factory(_engine(db))() as s:
        try:
            pack = add_pack(s, item, Decimal(quantity), name, gtin)
        except DawaError as exc:
            _fail(f"{exc.field or 'pack'}: {exc.message}")
        s.commit()
        typer.echo(f"{item}: {pack.name} = {pack.units}" + (f", GTIN {pack.gtin}" if pack.gtin else ""))


@packs_app.command("list")
def list_packs(item: Annotated[str, typer.Argument(help="Item code")],
               db: Annotated[str | None, typer.Option(help="Database URL (default: DAWA_DATABASE_URL)")] = None):
    from stock.db import session_factory
    from stock.errors import UnknownItem
    from stock.masterdata import item_by_code
    from stock.requisitions.packs import packs_of
    from web.cli.common import _engine, _fail

    with session_factory(_engine(db))() as s:
        try:
            it = item_by_code(s, item)
        except UnknownItem as exc:
            _fail(str(exc))
        for p in packs_of(s, [it.id])[it.id]:
            typer.echo(f"{p.name}\t{p.units} {it.unit}\t{p.gtin or ''}")


def register(app: typer.Typer) -> None:
    app.add_typer(packs_app, name="packs")


__all__ = ["register"]
