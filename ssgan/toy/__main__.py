"""``python -m ssgan.toy``: see ``ssgan/toy/__init__.py``, and ``--help``."""
from ssgan.toy.cli import main

raise SystemExit(main())
