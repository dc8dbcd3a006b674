-- `!stop` and the Stop button: who asked to stop a running turn (read by the process running
-- it), and the Slack messages that asked, so the twin events of one message stop once.
-- `admitted`: a claimed or running turn that counts against the caps on concurrent turns.
ALTER TABLE queue ADD COLUMN stop_requested_by TEXT;
ALTER TABLE queue ADD COLUMN admitted INTEGER NOT NULL DEFAULT 0;
CREATE INDEX queue_admitted ON queue (team_id, user_id) WHERE admitted = 1;

CREATE TABLE stop_requests (
    team_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    message_ts TEXT NOT NULL,
    requested_at REAL NOT NULL,
    PRIMARY KEY (team_id, channel_id, message_ts)
);

-- The Home tab: a person's threads, and a workspace's usage since a time.
CREATE INDEX participants_person ON participants (team_id, user_id, last_at);
CREATE INDEX usage_team_time ON usage (team_id, recorded_at);
