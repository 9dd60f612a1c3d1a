"""The control loop: sample, evaluate policies, choose a victim, act, record."""
