-- What running turns are about to spend: each turn's estimated input, booked before its
-- request goes out, so a burst of turns is held to the budgets as their usage would be.
CREATE TABLE reservations (
    item_id INTEGER PRIMARY KEY,
    team_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    reserved_at REAL NOT NULL
);
CREATE INDEX reservations_team ON reservations (team_id, user_id);
