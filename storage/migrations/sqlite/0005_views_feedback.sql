-- What each person last looked at beside the app (Slack's `app_context_changed`), so a DM
-- about "this channel" or "this thread" knows which one.
CREATE TABLE viewing (
    team_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    thread_ts TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (team_id, user_id)
);

-- A press of an answer's feedback buttons: one per person and answer (a second press changes it).
CREATE TABLE feedback (
    team_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    reply_ts TEXT NOT NULL,
    thread_ts TEXT NOT NULL,
    user_id TEXT NOT NULL,
    rating TEXT NOT NULL,
    model TEXT NOT NULL,
    item_id INTEGER,
    recorded_at REAL NOT NULL,
    PRIMARY KEY (team_id, channel_id, reply_ts, user_id)
);
CREATE INDEX feedback_team_time ON feedback (team_id, recorded_at);
