-- What running turns are about to spend: each turn's estimated input, booked before its
-- request goes out, so a burst of turns is held to the budgets as their usage would be.
CREATE TABLE reservations (
    item_id bigint PRIMARY KEY,
    team_id text NOT NULL,
    user_id text NOT NULL,
    input_tokens integer NOT NULL,
    reserved_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reservations_team ON reservations (team_id, user_id);
