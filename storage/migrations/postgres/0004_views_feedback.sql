-- What each person last looked at beside the app (Slack's `app_context_changed`), so a DM
-- about "this channel" or "this thread" knows which one.
CREATE TABLE viewing (
    team_id text NOT NULL,
    user_id text NOT NULL,
    channel_id text NOT NULL,
    thread_ts text NOT NULL,
    seen_at timestamptz NOT NULL,
    PRIMARY KEY (team_id, user_id)
);

-- A press of an answer's feedback buttons: one per person and answer (a second press changes it).
CREATE TABLE feedback (
    team_id text NOT NULL,
    channel_id text NOT NULL,
    reply_ts text NOT NULL,
    thread_ts text NOT NULL,
    user_id text NOT NULL,
    rating text NOT NULL,
    model text NOT NULL,
    item_id bigint,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (team_id, channel_id, reply_ts, user_id)
);
CREATE INDEX feedback_team_time ON feedback (team_id, recorded_at);
