"""``python -m zg_asktell``: the ``zg-asktell`` command line (see :mod:`zg_asktell.cli`)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
