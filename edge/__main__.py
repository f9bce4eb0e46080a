from edge.commands.cli import main

raise SystemExit(main())
