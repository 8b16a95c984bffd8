"""`python -m emolib` is the `emolib` command."""
from emolib.cli import main

__all__: list[str] = []

raise SystemExit(main())
