"""Work started by a clock rather than by Slack: housekeeping and retention."""
