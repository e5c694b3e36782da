from snn2chip.cli import main

raise SystemExit(main())
