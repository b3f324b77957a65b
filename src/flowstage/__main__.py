"""``python -m flowstage``: the same as the ``flowstage`` command."""

from flowstage.cli.main import main

if __name__ == "__main__":
    main()
