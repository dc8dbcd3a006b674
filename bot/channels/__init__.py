"""Per-channel settings: what a channel may set (`keys`), the settings file (`file`), and how a
channel's settings fall back to its workspace's and the process's (`book`)."""
