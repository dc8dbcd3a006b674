-- The skills a thread started with (kept until it is reset, so its prompt cache and container
-- keep matching), the custom skills uploaded from CUSTOM_SKILLS_DIR, and each turn's web use.
ALTER TABLE conversations ADD COLUMN skills TEXT;

CREATE TABLE custom_skills (
    name TEXT PRIMARY KEY,
    skill_id TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL
);

ALTER TABLE usage ADD COLUMN web_searches INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN web_fetches INTEGER NOT NULL DEFAULT 0;
