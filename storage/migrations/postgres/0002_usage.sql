-- What each answered turn used, booked to its thread and to the person who asked; kept
-- across resets (the tokens were spent).
CREATE TABLE usage (
    id bigserial PRIMARY KEY,
    team_id text NOT NULL,
    channel_id text NOT NULL,
    thread_ts text NOT NULL,
    user_id text NOT NULL,
    model text NOT NULL,
    input_tokens bigint NOT NULL,
    cache_creation_input_tokens bigint NOT NULL,
    cache_read_input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    code_runs integer NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usage_thread ON usage (team_id, channel_id, thread_ts);
CREATE INDEX usage_user ON usage (team_id, user_id, recorded_at);
