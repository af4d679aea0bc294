"""``python -m e3d`` runs the CLI."""

from e3d.cli import main

raise SystemExit(main())
