from chargewatch.cli import main

raise SystemExit(main())
