-- The files a thread has seen since its last reset: shared in (a Slack file, copied into the
-- Files API) and produced (by the code, shared into the thread), for `!files`, `!export` and `!fork`.
CREATE TABLE thread_files (
    team_id text NOT NULL,
    channel_id text NOT NULL,
    thread_ts text NOT NULL,
    file_id text NOT NULL,
    direction text NOT NULL,
    name text NOT NULL,
    size bigint NOT NULL,
    message_ts text,
    slack_file_id text,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (team_id, channel_id, thread_ts, file_id)
);

-- A thread forked from another (`!fork`): the original's files, put into the fork's new
-- container by its first turn (then cleared).
ALTER TABLE conversations ADD COLUMN inherited_files TEXT;
