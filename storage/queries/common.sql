-- Queries whose SQL is the same in every dialect (times here are epoch seconds bound as :now).
-- A name defined here must not be defined again in a dialect's file.

-- === scheduled runs ===

-- name: create_schedule
INSERT INTO schedules (team_id, channel_id, thread_ts, user_id, request, kind, spec, tz, next_at, created_at)
VALUES (:team, :channel, :thread_ts, :user, :request, :kind, :spec, :tz, :next_at, :created)
RETURNING id;

-- name: schedule
SELECT id, team_id, channel_id, thread_ts, user_id, request, kind, spec, tz, next_at, state, skipped, last_outcome,
       last_run_at
FROM schedules WHERE id = :id;

-- name: thread_schedules
SELECT id, team_id, channel_id, thread_ts, user_id, request, kind, spec, tz, next_at, state, skipped, last_outcome,
       last_run_at
FROM schedules WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts AND state != 'deleted'
ORDER BY id;

-- name: person_schedules
SELECT id, team_id, channel_id, thread_ts, user_id, request, kind, spec, tz, next_at, state, skipped, last_outcome,
       last_run_at
FROM schedules WHERE team_id = :team AND (CAST(:user AS TEXT) IS NULL OR user_id = :user) AND state IN ('active', 'paused')
ORDER BY next_at LIMIT :limit;

-- name: count_schedules_of
SELECT COUNT(*) FROM schedules WHERE team_id = :team AND user_id = :user AND state IN ('active', 'paused');

-- name: due_schedules
SELECT id, team_id, channel_id, thread_ts, user_id, request, kind, spec, tz, next_at, state, skipped, last_outcome,
       last_run_at
FROM schedules WHERE state = 'active' AND next_at <= :now ORDER BY next_at LIMIT :limit;

-- name: next_schedule_at
SELECT MIN(next_at) FROM schedules WHERE state = 'active';

-- name: advance_schedule
-- Fires one occurrence: only the process that moves `next_at` on from :due queues the run.
UPDATE schedules SET next_at = :following, last_run_at = :now,
    state = CASE WHEN CAST(:following AS DOUBLE PRECISION) IS NULL THEN 'done' ELSE state END
WHERE id = :id AND state = 'active' AND next_at = :due;

-- name: set_schedule_state
UPDATE schedules SET state = :state, skipped = CASE WHEN :state = 'active' THEN 0 ELSE skipped END,
    next_at = COALESCE(CAST(:next_at AS DOUBLE PRECISION), next_at)
WHERE id = :id AND state IN ('active', 'paused');

-- name: note_schedule_outcome
UPDATE schedules SET last_outcome = :outcome,
    skipped = CASE WHEN :skipped THEN skipped + 1 ELSE 0 END
WHERE id = :id
RETURNING skipped, state;

-- name: is_participant
SELECT 1 FROM participants WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts AND user_id = :user;

-- name: forget_schedules
DELETE FROM schedules WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts;

-- === the same in every dialect, from the queue, conversations, files, usage and skills ===

-- name: lock_thread
-- An enqueue takes its thread's claim row before its item is numbered: a thread's items are
-- then numbered in the order they commit, and its head is always its oldest.
INSERT INTO claims (team_id, channel_id, thread_ts) VALUES (:team, :channel, :thread_ts)
ON CONFLICT (team_id, channel_id, thread_ts) DO UPDATE SET head_id = claims.head_id;

-- name: set_head
UPDATE claims SET head_id = :item, head_user = :user
WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts AND head_id IS NULL;

-- name: admit_turn
UPDATE claims SET admitted_user = :user
WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts AND owner = :owner AND generation = :generation;

-- name: start_item
UPDATE queue SET state = 'running', attempts = attempts + 1 WHERE id = :item;

-- name: hold_back_item
UPDATE queue SET state = 'pending', attempts = attempts - 1 WHERE id = :item AND state = 'running';

-- name: drop_lease
UPDATE claims SET owner = NULL, lease_until = NULL, admitted_user = NULL
WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts AND owner = :owner AND generation = :generation;

-- name: release_lease
-- Only once the thread is empty: an enqueue holds the row until its item is the head.
DELETE FROM claims
WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts AND owner = :owner
  AND generation = :generation AND head_id IS NULL;

-- name: drop_leases
UPDATE claims SET owner = NULL, lease_until = NULL, admitted_user = NULL WHERE owner = :owner;

-- name: clear_uploads
UPDATE queue SET uploads = '[]' WHERE id = :item;

-- name: set_reply_ts
UPDATE queue SET reply_ts = :reply_ts WHERE id = :item;

-- name: reply_thread
SELECT thread_ts, user_id FROM queue WHERE team_id = :team AND channel_id = :channel AND reply_ts = :reply_ts LIMIT 1;

-- name: item_state
SELECT state FROM queue WHERE id = :item;

-- name: count_waiting
SELECT COUNT(*) FROM queue WHERE state = 'pending';

-- name: prune_reservations
DELETE FROM reservations WHERE item_id NOT IN (SELECT id FROM queue WHERE state != 'done');

-- name: owns_conversation
SELECT 1 FROM conversations WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts;

-- name: delete_history
DELETE FROM history WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts;

-- name: last_seq
SELECT COALESCE(MAX(seq), 0) FROM history WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts;

-- name: copy_history
INSERT INTO history (team_id, channel_id, thread_ts, seq, role, content)
SELECT team_id, channel_id, CAST(:to_ts AS TEXT), seq, role, content FROM history
WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts;

-- name: inherit_conversation
-- The fork starts with the original's skills (the same cached prefix) and its files to carry over.
UPDATE conversations SET inherited_files = :files,
    skills = (SELECT o.skills FROM conversations o
              WHERE o.team_id = :team AND o.channel_id = :channel AND o.thread_ts = :thread_ts)
WHERE team_id = :team AND channel_id = :channel AND thread_ts = :to_ts;

-- name: clear_inherited
UPDATE conversations SET inherited_files = NULL
WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts;

-- name: keep_settings_seen
UPDATE conversations SET settings_seen = :seen
WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts;

-- name: keep_skills
-- The first list a thread is answered with stays until a reset forgets the conversation's container.
UPDATE conversations SET skills = COALESCE(skills, :skills)
WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts;

-- name: owe_delivery
INSERT INTO deliveries (item_id, position, file_id) VALUES (:item, :position, :file_id);

-- name: add_note
INSERT INTO thread_notes (team_id, channel_id, thread_ts, message_ts, user_id, text)
VALUES (:team, :channel, :thread_ts, :message_ts, :user, :text)
ON CONFLICT DO NOTHING;

-- name: drop_note
DELETE FROM thread_notes
WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts AND message_ts = :message_ts;

-- name: forget_container
UPDATE conversations SET container_id = NULL, container_expires_at = NULL, skills = NULL
WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts;

-- name: forget_participants
DELETE FROM participants WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts;

-- name: forget_notes
DELETE FROM thread_notes WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts;

-- name: pending_deliveries
SELECT position, file_id, slack_file_id FROM deliveries WHERE item_id = :item AND NOT delivered ORDER BY position;

-- name: delivery_started
UPDATE deliveries SET slack_file_id = :slack_file_id WHERE item_id = :item AND position = :position;

-- name: thread_usage
SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(cache_creation_input_tokens), 0),
       COALESCE(SUM(cache_read_input_tokens), 0), COALESCE(SUM(output_tokens), 0), COALESCE(SUM(code_runs), 0), COUNT(*),
       COALESCE(SUM(web_searches), 0), COALESCE(SUM(web_fetches), 0)
FROM usage WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts;

-- name: waiting_in_thread
SELECT COUNT(*) FROM queue
WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts AND state != 'done' AND id != :item;

-- name: forget_thread_files
DELETE FROM thread_files WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts;

-- name: drop_channel_settings
DELETE FROM channel_settings WHERE team_id = :team AND channel_id = :channel;

-- name: custom_skill
SELECT skill_id, version, digest FROM custom_skills WHERE name = :name;

-- name: keep_custom_skill
INSERT INTO custom_skills (name, skill_id, version, digest) VALUES (:name, :skill_id, :version, :digest)
ON CONFLICT (name) DO UPDATE SET skill_id = excluded.skill_id, version = excluded.version, digest = excluded.digest;

-- name: release_reservation
DELETE FROM reservations WHERE item_id = :item;

-- name: save_installation
INSERT INTO installations (enterprise_id, team_id, is_enterprise_install, bot, installation, installed_at)
VALUES (:enterprise, :team, :org, :bot, :installation, :at)
ON CONFLICT (enterprise_id, team_id) DO UPDATE SET is_enterprise_install = excluded.is_enterprise_install,
    bot = excluded.bot, installation = COALESCE(excluded.installation, installations.installation),
    installed_at = excluded.installed_at, refreshing_until = NULL;

-- name: team_installation
SELECT enterprise_id, team_id, bot, installation FROM installations
WHERE team_id = :team AND (:enterprise = '' OR enterprise_id = :enterprise);

-- name: org_installation
SELECT enterprise_id, team_id, bot, installation FROM installations WHERE enterprise_id = :enterprise AND team_id = '';

-- name: delete_installation
DELETE FROM installations WHERE enterprise_id = :enterprise AND team_id = :team;

-- name: start_token_refresh
UPDATE installations SET refreshing_until = :until
WHERE enterprise_id = :enterprise AND team_id = :team AND (refreshing_until IS NULL OR refreshing_until < :at);

-- name: end_token_refresh
UPDATE installations SET refreshing_until = NULL WHERE enterprise_id = :enterprise AND team_id = :team;

-- name: issue_oauth_state
INSERT INTO oauth_states (state, expires_at) VALUES (:state, :expires);

-- name: consume_oauth_state
DELETE FROM oauth_states WHERE state = :state RETURNING expires_at;

-- name: prune_oauth_states
DELETE FROM oauth_states WHERE expires_at < :at;

-- name: team_conversations
SELECT channel_id, thread_ts FROM conversations WHERE team_id = :team;

-- name: team_thread_file_ids
SELECT file_id FROM thread_files WHERE team_id = :team;

-- name: team_owed_file_ids
SELECT d.file_id FROM deliveries d JOIN queue q ON q.id = d.item_id WHERE q.team_id = :team;

-- name: forget_team_deliveries
DELETE FROM deliveries WHERE item_id IN (SELECT id FROM queue WHERE team_id = :team);

-- name: forget_team_reservations
DELETE FROM reservations WHERE team_id = :team;

-- name: forget_team_queue
DELETE FROM queue WHERE team_id = :team;

-- name: forget_team_claims
DELETE FROM claims WHERE team_id = :team;

-- name: forget_team_history
DELETE FROM history WHERE team_id = :team;

-- name: forget_team_conversations
DELETE FROM conversations WHERE team_id = :team;

-- name: forget_team_participants
DELETE FROM participants WHERE team_id = :team;

-- name: forget_team_notes
DELETE FROM thread_notes WHERE team_id = :team;

-- name: forget_team_usage
DELETE FROM usage WHERE team_id = :team;

-- name: forget_team_stop_requests
DELETE FROM stop_requests WHERE team_id = :team;

-- name: forget_team_viewing
DELETE FROM viewing WHERE team_id = :team;

-- name: forget_team_feedback
DELETE FROM feedback WHERE team_id = :team;

-- name: forget_team_channel_settings
DELETE FROM channel_settings WHERE team_id = :team;

-- name: forget_team_thread_files
DELETE FROM thread_files WHERE team_id = :team;

-- name: forget_team_schedules
DELETE FROM schedules WHERE team_id = :team;

-- name: forget_team_shared_channels
DELETE FROM shared_channels WHERE team_id = :team;

-- name: claim_shared_channel
INSERT INTO shared_channels (channel_id, team_id) VALUES (:channel, :team) ON CONFLICT (channel_id) DO NOTHING;

-- name: shared_channel_home
SELECT team_id FROM shared_channels WHERE channel_id = :channel;
