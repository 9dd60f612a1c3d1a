"""`python -m zoomdlab.lab.workload <name> [args]`: run one lab workload (see workloads.py)."""

from zoomdlab.lab.workloads import main

raise SystemExit(main())
