"""``python -m compile --target BOARD``: checkpoints -> a validated bundle for one board."""
from compile.cli import main

raise SystemExit(main())
