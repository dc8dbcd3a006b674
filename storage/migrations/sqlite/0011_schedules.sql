-- Scheduled runs (`!schedule`): a thread's request run again on time, as a turn of that thread
-- from the person who scheduled it. `next_at` is the occurrence due next (epoch seconds); a
-- process fires it by moving `next_at` on in the same transaction that queues the run, so each
-- occurrence runs once however many processes look.
CREATE TABLE schedules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    team_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    thread_ts TEXT NOT NULL,
    user_id TEXT NOT NULL,
    request TEXT NOT NULL,
    kind TEXT NOT NULL,
    spec TEXT NOT NULL,
    tz TEXT NOT NULL,
    next_at REAL,
    state TEXT NOT NULL DEFAULT 'active',
    skipped INTEGER NOT NULL DEFAULT 0,
    last_outcome TEXT,
    last_run_at REAL,
    created_at REAL NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_at) WHERE state = 'active';
CREATE INDEX schedules_thread ON schedules (team_id, channel_id, thread_ts);

ALTER TABLE queue ADD COLUMN schedule_id INTEGER;
