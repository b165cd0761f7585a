"""``python -m labreport`` -> the CLI."""

from labreport.cli import main

raise SystemExit(main())
