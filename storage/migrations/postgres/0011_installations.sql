-- Installations of the app by Slack's OAuth flow (many workspaces, org-wide installs): one row
-- per workspace install (team_id set) or org-wide install (team_id ''), keyed by enterprise and
-- team. `bot` is slack_sdk's Bot record as JSON (tokens included: this table is the secret one);
-- `refreshing_until` is held by the one process refreshing a rotating token (a refresh token
-- works once). `oauth_states` are the install flow's one-time states.
CREATE TABLE installations (
    enterprise_id text NOT NULL,
    team_id text NOT NULL,
    is_enterprise_install integer NOT NULL,
    bot text NOT NULL,
    installation text,
    installed_at double precision NOT NULL,
    refreshing_until double precision,
    PRIMARY KEY (enterprise_id, team_id)
);
CREATE INDEX installations_team ON installations (team_id);

CREATE TABLE oauth_states (
    state text PRIMARY KEY,
    expires_at double precision NOT NULL
);

-- A Slack Connect channel shared by workspaces that each installed threadbox: its events come
-- through whichever install Slack picks, and are answered by the one that saw it first.
CREATE TABLE shared_channels (
    channel_id text PRIMARY KEY,
    team_id text NOT NULL
);
