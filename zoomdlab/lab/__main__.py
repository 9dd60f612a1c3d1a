"""Allow `python -m zoomdlab.lab`."""

from zoomdlab.lab.cli import main

raise SystemExit(main())
