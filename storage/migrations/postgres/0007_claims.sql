-- One row per thread with open work or a lease: the claim a process takes (FOR UPDATE SKIP
-- LOCKED, so claimers never wait on each other), the thread's head (its oldest open item; an
-- enqueue locks the row before its item is numbered, so the head follows arrival), the
-- generation that fences a process that lost the lease, and the person whose running turn
-- counts against the caps. Claims and caps read these rows, never the waiting queue.
CREATE TABLE claims (
    team_id text NOT NULL,
    channel_id text NOT NULL,
    thread_ts text NOT NULL,
    head_id bigint,
    head_user text,
    owner text,
    lease_until timestamptz,
    generation bigint NOT NULL DEFAULT 0,
    admitted_user text,
    PRIMARY KEY (team_id, channel_id, thread_ts)
);
CREATE INDEX claims_head ON claims (head_id) WHERE head_id IS NOT NULL;
CREATE INDEX claims_head_user ON claims (team_id, head_user, head_id) WHERE head_id IS NOT NULL;
CREATE INDEX claims_owner ON claims (owner) WHERE owner IS NOT NULL;
CREATE INDEX claims_admitted ON claims (team_id, admitted_user) WHERE admitted_user IS NOT NULL;

INSERT INTO claims (team_id, channel_id, thread_ts, head_id, head_user, owner, lease_until, admitted_user)
SELECT h.team_id, h.channel_id, h.thread_ts, h.id, h.user_id, l.owner, l.lease_until,
       CASE WHEN h.admitted THEN h.user_id END
FROM (SELECT DISTINCT ON (team_id, channel_id, thread_ts) * FROM queue WHERE state <> 'done'
      ORDER BY team_id, channel_id, thread_ts, id) h
LEFT JOIN leases l ON l.team_id = h.team_id AND l.channel_id = h.channel_id AND l.thread_ts = h.thread_ts;

INSERT INTO claims (team_id, channel_id, thread_ts, owner, lease_until)
SELECT team_id, channel_id, thread_ts, owner, lease_until FROM leases
ON CONFLICT DO NOTHING;

DROP TABLE leases;
DROP INDEX queue_admitted;
ALTER TABLE queue DROP COLUMN admitted;

-- A message addressed to the bot (a mention, a DM): its thread becomes the bot's when its turn
-- comes and its person passes the policy, so no Slack look-up holds up the acknowledgement.
ALTER TABLE queue ADD COLUMN addressed boolean NOT NULL DEFAULT false;

-- The files an attempt put into the Files API for its message: a later attempt uses them
-- again, and housekeeping deletes those of a message that ended without an answer.
ALTER TABLE queue ADD COLUMN uploads jsonb NOT NULL DEFAULT '[]';
