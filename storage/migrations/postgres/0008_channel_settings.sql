-- What a channel's admins set in Slack (`/threadbox settings`): one row per channel (the DMs'
-- entry is the channel `dm`), the keys it sets as JSON, and who set them last. And what each
-- thread's last turn ran with, so that a change of model or instructions is told once.
CREATE TABLE channel_settings (
    team_id text NOT NULL,
    channel_id text NOT NULL,
    settings text NOT NULL,
    changed_by text NOT NULL,
    changed_at timestamptz NOT NULL,
    PRIMARY KEY (team_id, channel_id)
);

ALTER TABLE conversations ADD COLUMN settings_seen text;
