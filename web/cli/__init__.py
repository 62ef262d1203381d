"""The `dawa` command line: the app is assembled in web.cli.main, each group of sub-commands in its own module."""
