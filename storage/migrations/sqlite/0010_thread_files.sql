-- The files a thread has seen since its last reset: shared in (a Slack file, copied into the
-- Files API) and produced (by the code, shared into the thread), for `!files`, `!export` and `!fork`.
CREATE TABLE thread_files (
    team_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    thread_ts TEXT NOT NULL,
    file_id TEXT NOT NULL,
    direction TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    message_ts TEXT,
    slack_file_id TEXT,
    recorded_at REAL NOT NULL,
    PRIMARY KEY (team_id, channel_id, thread_ts, file_id)
);

-- A thread forked from another (`!fork`): the original's files, put into the fork's new
-- container by its first turn (then cleared).
ALTER TABLE conversations ADD COLUMN inherited_files TEXT;
