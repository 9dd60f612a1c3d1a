"""Allow `python -m zoomd.lab`."""

from zoomd.lab.cli import main

raise SystemExit(main())
