"""`python -m zoomdlab.vmlab ...`: see zoomdlab.vmlab.cli."""

from zoomdlab.vmlab.cli import main

raise SystemExit(main())
