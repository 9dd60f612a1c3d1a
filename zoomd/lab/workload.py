"""`python -m zoomd.lab.workload <name> [args]`: run one lab workload (see workloads.py)."""

from zoomd.lab.workloads import main

raise SystemExit(main())
