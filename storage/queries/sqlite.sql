-- The store's queries for SQLite. Times are epoch seconds (REAL), passed in as :now.
-- A thread is (:team, :channel, :thread_ts). Its claim row holds its head (oldest open item),
-- its lease, and the person whose running turn counts against the caps.

-- name: check_writable
INSERT INTO health (id, checked_at) VALUES (1, :now)
ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at;

-- === the queue ===

-- name: enqueue_message
INSERT INTO queue (team_id, channel_id, thread_ts, kind, message_ts, user_id, text, files, addressed, received_at,
                   schedule_id)
VALUES (:team, :channel, :thread_ts, 'message', :message_ts, :user, :text, :files, :addressed, :now, :schedule_id)
ON CONFLICT (team_id, channel_id, message_ts) DO NOTHING
RETURNING id;

-- name: enqueue_reset
INSERT INTO queue (team_id, channel_id, thread_ts, kind, user_id, response_url, replace_original, received_at)
VALUES (:team, :channel, :thread_ts, 'reset', :user, :response_url, :replace_original, :now)
RETURNING id;

-- name: start_conversation
INSERT INTO conversations (team_id, channel_id, thread_ts, created_at, updated_at)
VALUES (:team, :channel, :thread_ts, :now, :now)
ON CONFLICT DO NOTHING;

-- name: touch_participant
INSERT INTO participants (team_id, channel_id, thread_ts, user_id, last_text, last_at)
VALUES (:team, :channel, :thread_ts, :user, :text, :now)
ON CONFLICT (team_id, channel_id, thread_ts, user_id)
DO UPDATE SET last_text = excluded.last_text, last_at = excluded.last_at;

-- name: people_at_cap
-- The people whose running turns (one claim row each) reach :cap: none, mostly.
SELECT team_id, admitted_user FROM claims
WHERE admitted_user IS NOT NULL AND lease_until >= :now
GROUP BY team_id, admitted_user HAVING COUNT(*) >= :cap;

-- name: turns_running
-- Running turns that count against the caps: everyone's.
SELECT COUNT(*) FROM claims WHERE admitted_user IS NOT NULL AND lease_until >= :now;

-- name: turns_running_of
-- Running turns that count against the caps: one person's.
SELECT COUNT(*) FROM claims
WHERE team_id = :team AND admitted_user = :user AND lease_until >= :now;

-- name: claimable_threads
-- Free threads by their head, oldest first; a new turn of someone at a cap (:capped, or
-- everyone when :full) waits. `lock_claim` then takes the one chosen.
SELECT c.team_id, c.channel_id, c.thread_ts
FROM claims c JOIN queue q ON q.id = c.head_id
WHERE c.head_id IS NOT NULL AND (c.owner IS NULL OR c.lease_until < :now)
  AND NOT (q.kind = 'message' AND NOT q.answered AND q.state != 'running'
           AND (:full OR EXISTS (SELECT 1 FROM json_each(:capped) p
                                 WHERE json_extract(p.value, '$.team_id') = c.team_id
                                   AND json_extract(p.value, '$.user_id') = c.head_user)))
ORDER BY c.head_id LIMIT :limit;

-- name: lock_claim
-- One candidate, if it is still free; a row another claimer is taking is skipped, not waited for.
SELECT c.head_user, (q.kind = 'message' AND NOT q.answered AND q.state != 'running') AS counts
FROM claims c JOIN queue q ON q.id = c.head_id
WHERE c.team_id = :team AND c.channel_id = :channel AND c.thread_ts = :thread_ts
  AND (c.owner IS NULL OR c.lease_until < :now);

-- name: take_lease
-- Lease times run from the statement (the connector sets :now as it runs it), not from before the lock.
UPDATE claims SET owner = :owner, lease_until = :now + :seconds,
    generation = generation + 1, admitted_user = CASE WHEN :admit THEN head_user END
WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts
RETURNING generation;

-- name: renew_lease
UPDATE claims SET lease_until = :now + :seconds
WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts AND owner = :owner
  AND generation = :generation AND lease_until >= :now
RETURNING admitted_user;

-- name: head_item
SELECT id, kind, user_id, message_ts, text, files, response_url, replace_original, reply_ts, answered,
       marked_queued, attempts, user_files, stop_requested_by, addressed, uploads, schedule_id
FROM queue WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts AND state != 'done'
ORDER BY id LIMIT 1;

-- name: held_back_of
-- The free threads whose head is a new turn of one of :people (each at the per-person cap).
SELECT c.team_id, c.channel_id, c.thread_ts, q.message_ts, q.user_id, q.text, q.id
FROM json_each(:people) p
JOIN claims c ON c.team_id = json_extract(p.value, '$.team_id') AND c.head_user = json_extract(p.value, '$.user_id')
  AND c.head_id IS NOT NULL
JOIN queue q ON q.id = c.head_id
WHERE (c.owner IS NULL OR c.lease_until < :now)
  AND q.state = 'pending' AND q.kind = 'message' AND NOT q.answered AND NOT q.marked_queued
ORDER BY c.head_id LIMIT :limit;

-- name: held_back_all
-- Every free thread whose head is a new turn (the overall cap is full).
SELECT c.team_id, c.channel_id, c.thread_ts, q.message_ts, q.user_id, q.text, q.id
FROM claims c JOIN queue q ON q.id = c.head_id
WHERE c.head_id IS NOT NULL AND (c.owner IS NULL OR c.lease_until < :now)
  AND q.state = 'pending' AND q.kind = 'message' AND NOT q.answered AND NOT q.marked_queued
ORDER BY c.head_id LIMIT :limit;

-- name: renew_leases
-- Only the claims (:held, each with its generation) a process still works on: one it gave up
-- without letting go (the database was away) runs out and is free for the others.
UPDATE claims SET lease_until = :now + :seconds
WHERE lease_until >= :now AND EXISTS (
    SELECT 1 FROM json_each(:held) h
    WHERE json_extract(h.value, '$.team') = claims.team_id AND json_extract(h.value, '$.channel') = claims.channel_id
      AND json_extract(h.value, '$.thread_ts') = claims.thread_ts AND json_extract(h.value, '$.owner') = claims.owner
      AND json_extract(h.value, '$.generation') = claims.generation)
RETURNING team_id, channel_id, thread_ts;

-- name: hand_back_items
-- A graceful hand-back is no interruption: the attempt it cut short is not counted.
UPDATE queue SET state = 'pending',
    attempts = CASE WHEN state = 'running' AND attempts > 0 THEN attempts - 1 ELSE attempts END
WHERE state != 'done' AND EXISTS (SELECT 1 FROM claims c WHERE c.owner = :owner AND c.team_id = queue.team_id
                                  AND c.channel_id = queue.channel_id AND c.thread_ts = queue.thread_ts);

-- name: live_processes
SELECT COUNT(DISTINCT owner) FROM claims WHERE owner IS NOT NULL AND lease_until > :now;

-- name: next_lease_expiry
SELECT MIN(lease_until) - :now FROM claims
WHERE owner IS NOT NULL AND owner != :owner AND head_id IS NOT NULL;

-- name: finish_item
UPDATE queue SET state = 'done', finished_at = :now WHERE id = :item AND state != 'done'
RETURNING team_id, channel_id, thread_ts;

-- name: advance_head
-- The thread's next open item becomes its head; only by the lease's holder, when one is
-- named (a process that lost the lease changes nothing).
UPDATE claims SET admitted_user = NULL,
    head_id = (SELECT MIN(o.id) FROM queue o WHERE o.team_id = claims.team_id AND o.channel_id = claims.channel_id
               AND o.thread_ts = claims.thread_ts AND o.state != 'done'),
    head_user = (SELECT o.user_id FROM queue o WHERE o.team_id = claims.team_id AND o.channel_id = claims.channel_id
                 AND o.thread_ts = claims.thread_ts AND o.state != 'done' ORDER BY o.id LIMIT 1)
WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts
  AND (:owner IS NULL OR (owner = :owner AND generation = :generation));

-- name: note_upload
UPDATE queue SET uploads = json_insert(uploads, '$[#]', json(:upload)) WHERE id = :item;

-- name: leftover_uploads
SELECT id, uploads FROM queue WHERE state = 'done' AND uploads != '[]' LIMIT :limit;

-- name: note_stop_message
INSERT INTO stop_requests (team_id, channel_id, message_ts, requested_at) VALUES (:team, :channel, :message_ts, :now)
ON CONFLICT DO NOTHING
RETURNING 1;

-- name: request_stop
UPDATE queue SET stop_requested_by = COALESCE(stop_requested_by, :user)
WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts AND state = 'running'
  AND kind = 'message' AND (:item IS NULL OR id = :item)
RETURNING id;

-- name: stop_requests
SELECT id, stop_requested_by FROM queue
WHERE id IN (SELECT value FROM json_each(:items)) AND stop_requested_by IS NOT NULL;

-- name: forgive_attempts
UPDATE queue SET attempts = attempts - 1
WHERE id IN (SELECT value FROM json_each(:items)) AND attempts > 0 AND state != 'done';

-- name: mark_queued
UPDATE queue SET marked_queued = 1 WHERE id = :item AND state = 'pending' AND NOT marked_queued;

-- name: prune_items
-- Answered rows a day old: long past any retry of their Slack event, in busy threads too.
DELETE FROM queue WHERE state = 'done' AND finished_at < :cutoff;

-- name: prune_stop_messages
DELETE FROM stop_requests WHERE requested_at < :cutoff;

-- name: prune_claims
-- Claims of emptied threads whose lease ended long ago (its process died, or left it behind).
DELETE FROM claims WHERE head_id IS NULL AND (lease_until IS NULL OR lease_until < :cutoff);

-- name: prune_viewing
DELETE FROM viewing WHERE seen_at < :cutoff;

-- name: prune_known_threads
-- Threads retention emptied long ago: nothing of them is kept but the row that they existed.
DELETE FROM conversations
WHERE updated_at < :known_cutoff AND container_id IS NULL
  AND NOT EXISTS (SELECT 1 FROM history h WHERE h.team_id = conversations.team_id
                  AND h.channel_id = conversations.channel_id AND h.thread_ts = conversations.thread_ts)
  AND NOT EXISTS (SELECT 1 FROM queue o WHERE o.team_id = conversations.team_id
                  AND o.channel_id = conversations.channel_id AND o.thread_ts = conversations.thread_ts);

-- === conversations ===

-- name: has_conversation
-- The bot's thread, or one that becomes it if its queued first message's person is let in.
SELECT 1 FROM conversations WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts
UNION ALL
SELECT 1 FROM queue WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts
  AND addressed AND state != 'done'
LIMIT 1;

-- name: conversation
SELECT container_id, container_expires_at, skills, settings_seen, inherited_files FROM conversations
WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts;

-- name: history
SELECT role, content FROM history WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts
ORDER BY seq;

-- name: append_history
INSERT INTO history (team_id, channel_id, thread_ts, seq, role, content)
VALUES (:team, :channel, :thread_ts, :seq, :role, :content);

-- name: keep_container
INSERT INTO conversations (team_id, channel_id, thread_ts, container_id, container_expires_at, created_at, updated_at)
VALUES (:team, :channel, :thread_ts, :container_id, :expires_at, :now, :now)
ON CONFLICT (team_id, channel_id, thread_ts) DO UPDATE SET container_id = excluded.container_id,
    container_expires_at = excluded.container_expires_at, updated_at = excluded.updated_at;

-- name: mark_answered
UPDATE queue SET answered = 1, user_files = :user_files, uploads = '[]' WHERE id = :item;

-- name: holds_lease
SELECT 1 FROM claims WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts
  AND owner = :owner AND generation = :generation;

-- name: settle_item
UPDATE queue SET answered = 1 WHERE id = :item;

-- name: drop_container
UPDATE conversations SET container_id = NULL, container_expires_at = NULL, skills = NULL, updated_at = :now
WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts;

-- name: notes_before
SELECT message_ts, user_id, text FROM thread_notes
WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts AND message_ts < :before_ts
ORDER BY message_ts;

-- name: idle_threads
SELECT team_id, channel_id, thread_ts FROM conversations c
WHERE updated_at < :cutoff
  AND (container_id IS NOT NULL
       OR EXISTS (SELECT 1 FROM history h WHERE h.team_id = c.team_id AND h.channel_id = c.channel_id AND h.thread_ts = c.thread_ts)
       OR EXISTS (SELECT 1 FROM participants p WHERE p.team_id = c.team_id AND p.channel_id = c.channel_id AND p.thread_ts = c.thread_ts))
  AND NOT EXISTS (SELECT 1 FROM queue o WHERE o.team_id = c.team_id AND o.channel_id = c.channel_id
                  AND o.thread_ts = c.thread_ts AND o.state != 'done')
  AND NOT EXISTS (SELECT 1 FROM schedules s WHERE s.team_id = c.team_id AND s.channel_id = c.channel_id
                  AND s.thread_ts = c.thread_ts AND s.state = 'active')
ORDER BY updated_at LIMIT :limit;

-- name: active_threads
SELECT c.thread_ts, c.updated_at, p.last_text FROM conversations c
JOIN participants p ON p.team_id = c.team_id AND p.channel_id = c.channel_id AND p.thread_ts = c.thread_ts
WHERE c.team_id = :team AND c.channel_id = :channel AND c.thread_ts != '' AND p.user_id = :user
ORDER BY c.updated_at DESC LIMIT :limit;

-- name: person_threads
WITH mine AS (
    SELECT p.channel_id, p.thread_ts, p.last_text, MAX(c.updated_at, p.last_at) AS last_active
    FROM participants p
    JOIN conversations c ON c.team_id = p.team_id AND c.channel_id = p.channel_id AND c.thread_ts = p.thread_ts
    WHERE p.team_id = :team AND p.user_id = :user
    ORDER BY last_active DESC, p.thread_ts DESC LIMIT :limit
)
SELECT m.channel_id, m.thread_ts, m.last_text, m.last_active,
       COALESCE(SUM(u.input_tokens), 0), COALESCE(SUM(u.cache_creation_input_tokens), 0),
       COALESCE(SUM(u.cache_read_input_tokens), 0), COALESCE(SUM(u.output_tokens), 0),
       COALESCE(SUM(u.code_runs), 0), COUNT(u.id)
FROM mine m
LEFT JOIN usage u ON u.team_id = :team AND u.channel_id = m.channel_id AND u.thread_ts = m.thread_ts
GROUP BY m.channel_id, m.thread_ts, m.last_text, m.last_active
ORDER BY m.last_active DESC, m.thread_ts DESC;

-- === files owed by answered turns ===

-- name: delivery_done
UPDATE deliveries SET delivered = 1 WHERE item_id = :item AND position = :position;

-- === usage ===

-- name: record_usage
INSERT INTO usage (team_id, channel_id, thread_ts, user_id, model, input_tokens, cache_creation_input_tokens,
                   cache_read_input_tokens, output_tokens, code_runs, web_searches, web_fetches, recorded_at)
VALUES (:team, :channel, :thread_ts, :user, :model, :input_tokens, :cache_creation_input_tokens,
        :cache_read_input_tokens, :output_tokens, :code_runs, :web_searches, :web_fetches, :now);

-- name: user_usage
SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(cache_creation_input_tokens), 0),
       COALESCE(SUM(cache_read_input_tokens), 0), COALESCE(SUM(output_tokens), 0), COALESCE(SUM(code_runs), 0), COUNT(*),
       COALESCE(SUM(web_searches), 0), COALESCE(SUM(web_fetches), 0)
FROM usage WHERE team_id = :team AND user_id = :user AND recorded_at >= :since
  AND (CAST(:channel AS TEXT) IS NULL OR channel_id = :channel);

-- name: team_usage
SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(cache_creation_input_tokens), 0),
       COALESCE(SUM(cache_read_input_tokens), 0), COALESCE(SUM(output_tokens), 0), COALESCE(SUM(code_runs), 0), COUNT(*),
       COALESCE(SUM(web_searches), 0), COALESCE(SUM(web_fetches), 0)
FROM usage WHERE team_id = :team AND recorded_at >= :since;

-- name: usage_by_person
SELECT user_id, COALESCE(SUM(input_tokens), 0), COALESCE(SUM(cache_creation_input_tokens), 0),
       COALESCE(SUM(cache_read_input_tokens), 0), COALESCE(SUM(output_tokens), 0), COALESCE(SUM(code_runs), 0), COUNT(*),
       COALESCE(SUM(web_searches), 0), COALESCE(SUM(web_fetches), 0)
FROM usage WHERE team_id = :team AND recorded_at >= :since GROUP BY user_id;

-- name: usage_by_channel
SELECT channel_id, COALESCE(SUM(input_tokens), 0), COALESCE(SUM(cache_creation_input_tokens), 0),
       COALESCE(SUM(cache_read_input_tokens), 0), COALESCE(SUM(output_tokens), 0), COALESCE(SUM(code_runs), 0), COUNT(*),
       COALESCE(SUM(web_searches), 0), COALESCE(SUM(web_fetches), 0)
FROM usage WHERE team_id = :team AND recorded_at >= :since GROUP BY channel_id;

-- === what people look at, and what they think of answers ===

-- name: set_viewing
INSERT INTO viewing (team_id, user_id, channel_id, thread_ts, seen_at)
VALUES (:team, :user, :channel, :thread_ts, :now)
ON CONFLICT (team_id, user_id)
DO UPDATE SET channel_id = excluded.channel_id, thread_ts = excluded.thread_ts, seen_at = excluded.seen_at;

-- name: viewing
SELECT channel_id, thread_ts FROM viewing WHERE team_id = :team AND user_id = :user AND seen_at >= :since;

-- name: record_feedback
INSERT INTO feedback (team_id, channel_id, reply_ts, thread_ts, user_id, rating, model, item_id, recorded_at)
VALUES (:team, :channel, :reply_ts, :thread_ts, :user, :rating, :model, :item_id, :now)
ON CONFLICT (team_id, channel_id, reply_ts, user_id)
DO UPDATE SET rating = excluded.rating, recorded_at = excluded.recorded_at;

-- name: feedback_totals
SELECT rating, COUNT(*) FROM feedback WHERE team_id = :team AND recorded_at >= :since GROUP BY rating;

-- === the files a thread has seen ===

-- name: note_thread_file
INSERT INTO thread_files (team_id, channel_id, thread_ts, file_id, direction, name, size, message_ts, slack_file_id, recorded_at)
VALUES (:team, :channel, :thread_ts, :file_id, :direction, :name, :size, :message_ts, :slack_file_id, :now)
ON CONFLICT (team_id, channel_id, thread_ts, file_id)
DO UPDATE SET slack_file_id = COALESCE(excluded.slack_file_id, thread_files.slack_file_id);

-- name: thread_files
SELECT file_id, direction, name, size, message_ts, slack_file_id, recorded_at FROM thread_files
WHERE team_id = :team AND channel_id = :channel AND thread_ts = :thread_ts
ORDER BY recorded_at, name;

-- === channel settings set in Slack ===

-- name: channel_settings
SELECT settings, changed_by, changed_at FROM channel_settings
WHERE team_id = :team AND channel_id = :channel;

-- name: team_channel_settings
SELECT channel_id, settings, changed_by, changed_at FROM channel_settings
WHERE team_id = :team ORDER BY channel_id;

-- name: keep_channel_settings
INSERT INTO channel_settings (team_id, channel_id, settings, changed_by, changed_at)
VALUES (:team, :channel, :settings, :user, :now)
ON CONFLICT (team_id, channel_id)
DO UPDATE SET settings = excluded.settings, changed_by = excluded.changed_by, changed_at = excluded.changed_at;

-- === reservations: what running turns are about to spend ===

-- name: reserve
INSERT INTO reservations (item_id, team_id, user_id, input_tokens, reserved_at)
VALUES (:item, :team, :user, :tokens, :now)
ON CONFLICT (item_id) DO UPDATE SET input_tokens = excluded.input_tokens, reserved_at = excluded.reserved_at;

-- name: reserved_input
-- Only turns not yet done count (a reservation a crash left behind counts no longer).
SELECT COALESCE(SUM(r.input_tokens), 0) FROM reservations r JOIN queue q ON q.id = r.item_id
WHERE r.team_id = :team AND (:user IS NULL OR r.user_id = :user) AND q.state != 'done'
  AND (:excluding IS NULL OR r.item_id != :excluding);

-- name: team_uploads
SELECT uploads FROM queue WHERE team_id = :team AND uploads != '[]';
