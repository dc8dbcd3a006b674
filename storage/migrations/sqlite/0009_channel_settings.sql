-- What a channel's admins set in Slack (`/threadbox settings`): one row per channel (the DMs'
-- entry is the channel `dm`), the keys it sets as JSON, and who set them last. And what each
-- thread's last turn ran with, so that a change of model or instructions is told once.
CREATE TABLE channel_settings (
    team_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    settings TEXT NOT NULL,
    changed_by TEXT NOT NULL,
    changed_at REAL NOT NULL,
    PRIMARY KEY (team_id, channel_id)
);

ALTER TABLE conversations ADD COLUMN settings_seen TEXT;
