-- Threads, their containers and history, and the inbox of accepted messages.
CREATE TABLE conversations (
    team_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    thread_ts TEXT NOT NULL,
    container_id TEXT,
    container_expires_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (team_id, channel_id, thread_ts)
);
CREATE TABLE history (
    team_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    thread_ts TEXT NOT NULL,
    seq INTEGER NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    PRIMARY KEY (team_id, channel_id, thread_ts, seq)
);
CREATE TABLE inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    team_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    message_ts TEXT NOT NULL,
    thread_ts TEXT NOT NULL,
    user_id TEXT NOT NULL,
    text TEXT NOT NULL,
    files TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    received_at REAL NOT NULL,
    UNIQUE (team_id, channel_id, message_ts)
);
CREATE INDEX inbox_pending ON inbox (done, team_id, channel_id, thread_ts, id);
CREATE INDEX inbox_user ON inbox (team_id, channel_id, user_id);
