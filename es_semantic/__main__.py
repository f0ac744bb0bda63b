"""``python -m es_semantic``: the ``es-semantic`` command line."""

from es_semantic.cli.main import main

main()
