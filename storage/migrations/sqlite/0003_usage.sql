-- What each answered turn used, booked to its thread and to the person who asked; kept
-- across resets (the tokens were spent).
CREATE TABLE usage (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    team_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    thread_ts TEXT NOT NULL,
    user_id TEXT NOT NULL,
    model TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    cache_creation_input_tokens INTEGER NOT NULL,
    cache_read_input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    code_runs INTEGER NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE INDEX usage_thread ON usage (team_id, channel_id, thread_ts);
CREATE INDEX usage_user ON usage (team_id, user_id, recorded_at);
