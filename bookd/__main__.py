"""``python -m bookd``: the same as the ``bookd`` command."""

from bookd.cli import main

main()
