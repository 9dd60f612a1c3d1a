"""The reclaim model: pure functions over snapshots, the heart of zoomd."""
