-- The skills a thread started with (kept until it is reset, so its prompt cache and container
-- keep matching), the custom skills uploaded from CUSTOM_SKILLS_DIR, and each turn's web use.
ALTER TABLE conversations ADD COLUMN skills text;

CREATE TABLE custom_skills (
    name text PRIMARY KEY,
    skill_id text NOT NULL,
    version text NOT NULL,
    digest text NOT NULL
);

ALTER TABLE usage ADD COLUMN web_searches integer NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN web_fetches integer NOT NULL DEFAULT 0;
