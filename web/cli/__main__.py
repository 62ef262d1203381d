"""`python -m web.cli`: the same command line as the `dawa` script."""

from web.cli.main import app

app()
