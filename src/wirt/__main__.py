from wirt.cli import main

raise SystemExit(main())
