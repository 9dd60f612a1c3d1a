"""`python -m zoomd.vmlab ...`: see zoomd.vmlab.cli."""

from zoomd.vmlab.cli import main

raise SystemExit(main())
