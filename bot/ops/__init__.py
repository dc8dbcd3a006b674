"""Operating threadbox: Prometheus metrics, logs and the audit trail."""
