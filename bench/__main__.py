"""`python -m bench`: the validation benchmark (see bench/validation.py and bench/README.md)."""
from __future__ import annotations

from bench.validation import main

raise SystemExit(main())
