"""threadbox: every Slack thread gets its own Claude code-execution container."""
