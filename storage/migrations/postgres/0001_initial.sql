-- Threads, their containers and history; the per-thread queue of messages and resets, with
-- leases held per thread by one process at a time; the files a turn still owes.
CREATE TABLE conversations (
    team_id text NOT NULL,
    channel_id text NOT NULL,
    thread_ts text NOT NULL,
    container_id text,
    container_expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, channel_id, thread_ts)
);

CREATE TABLE history (
    team_id text NOT NULL,
    channel_id text NOT NULL,
    thread_ts text NOT NULL,
    seq integer NOT NULL,
    role text NOT NULL,
    content jsonb NOT NULL,
    PRIMARY KEY (team_id, channel_id, thread_ts, seq)
);

CREATE TABLE queue (
    id bigserial PRIMARY KEY,
    team_id text NOT NULL,
    channel_id text NOT NULL,
    thread_ts text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('message', 'reset')),
    message_ts text,
    user_id text NOT NULL,
    text text NOT NULL DEFAULT '',
    files jsonb NOT NULL DEFAULT '[]',
    response_url text,
    replace_original boolean NOT NULL DEFAULT false,
    state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done')),
    attempts integer NOT NULL DEFAULT 0,
    reply_ts text,
    answered boolean NOT NULL DEFAULT false,
    user_files jsonb NOT NULL DEFAULT '[]',
    marked_queued boolean NOT NULL DEFAULT false,
    received_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    UNIQUE (team_id, channel_id, message_ts)
);
CREATE INDEX queue_open ON queue (team_id, channel_id, thread_ts, id) WHERE state <> 'done';
CREATE INDEX queue_finished ON queue (finished_at) WHERE state = 'done';

CREATE TABLE leases (
    team_id text NOT NULL,
    channel_id text NOT NULL,
    thread_ts text NOT NULL,
    owner text NOT NULL,
    lease_until timestamptz NOT NULL,
    PRIMARY KEY (team_id, channel_id, thread_ts)
);
CREATE INDEX leases_owner ON leases (owner);

CREATE TABLE deliveries (
    item_id bigint NOT NULL REFERENCES queue (id) ON DELETE CASCADE,
    position integer NOT NULL,
    file_id text NOT NULL,
    slack_file_id text,
    delivered boolean NOT NULL DEFAULT false,
    PRIMARY KEY (item_id, position)
);

CREATE TABLE participants (
    team_id text NOT NULL,
    channel_id text NOT NULL,
    thread_ts text NOT NULL,
    user_id text NOT NULL,
    last_text text NOT NULL,
    last_at timestamptz NOT NULL,
    PRIMARY KEY (team_id, channel_id, thread_ts, user_id)
);

CREATE TABLE health (
    id integer PRIMARY KEY CHECK (id = 1),
    checked_at timestamptz NOT NULL
);

-- With FOLLOW_UPS=mention: thread messages that did not mention the bot, handed to Claude as
-- context with the next message that does.
CREATE TABLE thread_notes (
    team_id text NOT NULL,
    channel_id text NOT NULL,
    thread_ts text NOT NULL,
    message_ts text NOT NULL,
    user_id text NOT NULL,
    text text NOT NULL,
    PRIMARY KEY (team_id, channel_id, thread_ts, message_ts)
);
