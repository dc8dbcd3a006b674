-- Scheduled runs (`!schedule`): a thread's request run again on time, as a turn of that thread
-- from the person who scheduled it. `next_at` is the occurrence due next; a process fires it by
-- moving `next_at` on in the same transaction that queues the run, so each occurrence runs once
-- however many processes look.
CREATE TABLE schedules (
    id bigserial PRIMARY KEY,
    team_id text NOT NULL,
    channel_id text NOT NULL,
    thread_ts text NOT NULL,
    user_id text NOT NULL,
    request text NOT NULL,
    kind text NOT NULL,
    spec text NOT NULL,
    tz text NOT NULL,
    next_at double precision,
    state text NOT NULL DEFAULT 'active',
    skipped integer NOT NULL DEFAULT 0,
    last_outcome text,
    last_run_at double precision,
    created_at double precision NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_at) WHERE state = 'active';
CREATE INDEX schedules_thread ON schedules (team_id, channel_id, thread_ts);

ALTER TABLE queue ADD COLUMN schedule_id bigint;
