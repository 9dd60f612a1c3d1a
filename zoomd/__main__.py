"""Allow `python -m zoomd`."""

from zoomd.cli import main

raise SystemExit(main())
