-- The inbox becomes a per-thread queue of messages and resets, with leases held per thread by
-- one process at a time, the reply message of a running turn, and the files a turn still owes.
CREATE TABLE queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    team_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    thread_ts TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('message', 'reset')),
    message_ts TEXT,
    user_id TEXT NOT NULL,
    text TEXT NOT NULL DEFAULT '',
    files TEXT NOT NULL DEFAULT '[]',
    response_url TEXT,
    replace_original INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done')),
    attempts INTEGER NOT NULL DEFAULT 0,
    reply_ts TEXT,
    answered INTEGER NOT NULL DEFAULT 0,
    user_files TEXT NOT NULL DEFAULT '[]',
    marked_queued INTEGER NOT NULL DEFAULT 0,
    received_at REAL NOT NULL,
    finished_at REAL,
    UNIQUE (team_id, channel_id, message_ts)
);
CREATE INDEX queue_open ON queue (team_id, channel_id, thread_ts, id) WHERE state != 'done';
CREATE INDEX queue_finished ON queue (finished_at) WHERE state = 'done';

INSERT INTO queue (id, team_id, channel_id, thread_ts, kind, message_ts, user_id, text, files, state,
                   received_at, finished_at)
SELECT id, team_id, channel_id, thread_ts, 'message', message_ts, user_id, text, files,
       CASE WHEN done = 1 THEN 'done' ELSE 'pending' END, received_at,
       CASE WHEN done = 1 THEN received_at END
FROM inbox;

CREATE TABLE leases (
    team_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    thread_ts TEXT NOT NULL,
    owner TEXT NOT NULL,
    lease_until REAL NOT NULL,
    PRIMARY KEY (team_id, channel_id, thread_ts)
);
CREATE INDEX leases_owner ON leases (owner);

CREATE TABLE deliveries (
    item_id INTEGER NOT NULL REFERENCES queue (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    file_id TEXT NOT NULL,
    slack_file_id TEXT,
    delivered INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (item_id, position)
);

-- Who talked to the bot in which thread, for the /reset picker; kept while the thread lives.
CREATE TABLE participants (
    team_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    thread_ts TEXT NOT NULL,
    user_id TEXT NOT NULL,
    last_text TEXT NOT NULL,
    last_at REAL NOT NULL,
    PRIMARY KEY (team_id, channel_id, thread_ts, user_id)
);
INSERT INTO participants (team_id, channel_id, thread_ts, user_id, last_text, last_at)
SELECT team_id, channel_id, thread_ts, user_id, text, received_at
FROM inbox i
WHERE id = (SELECT MAX(id) FROM inbox j WHERE j.team_id = i.team_id AND j.channel_id = i.channel_id
            AND j.thread_ts = i.thread_ts AND j.user_id = i.user_id);

DROP TABLE inbox;

-- One row that /healthz writes, to prove the database takes writes.
CREATE TABLE health (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at REAL NOT NULL
);

-- With FOLLOW_UPS=mention: thread messages that did not mention the bot, handed to Claude as
-- context with the next message that does.
CREATE TABLE thread_notes (
    team_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    thread_ts TEXT NOT NULL,
    message_ts TEXT NOT NULL,
    user_id TEXT NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (team_id, channel_id, thread_ts, message_ts)
);
