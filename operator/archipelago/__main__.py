"""``python -m archipelago``: the command line."""

from archipelago import cli

cli.main()
