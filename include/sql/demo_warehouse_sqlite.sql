-- Demo customer data platform warehouse, SQLite flavour.
-- Read by demo_warehouse.seed; keep semicolons out of comments and string literals.
-- Dates are ISO 'YYYY-MM-DD' text and timestamps 'YYYY-MM-DD HH:MM:SS+00:00' text (UTC).
-- lifetime_value is REAL, not NUMERIC: NUMERIC affinity would turn 120.0 into the integer 120.
-- The tier check is an OR chain because IN (...) in a CHECK doubles the cost of a bulk insert.
-- WITHOUT ROWID clusters each table on its primary key, which is also how it is read.

CREATE TABLE IF NOT EXISTS customer_profiles (
    customer_id    TEXT PRIMARY KEY,
    email          TEXT,
    first_name     TEXT,
    last_name      TEXT,
    city           TEXT,
    country        TEXT NOT NULL CHECK (length(country) = 2),
    birthday       DATE,
    lifetime_value REAL NOT NULL DEFAULT 0,
    loyalty_tier   TEXT NOT NULL CHECK (
        loyalty_tier = 'bronze' OR loyalty_tier = 'silver' OR loyalty_tier = 'gold' OR loyalty_tier = 'platinum'
    ),
    signup_date    DATE NOT NULL,
    updated_at     TIMESTAMP NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS segments (
    segment      TEXT PRIMARY KEY,
    description  TEXT NOT NULL,
    refreshed_at TIMESTAMP NOT NULL
);

-- The primary key is the index on segment (its leading column): reading one segment is a range scan.
CREATE TABLE IF NOT EXISTS segment_memberships (
    segment     TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    PRIMARY KEY (segment, customer_id)
) WITHOUT ROWID;

CREATE VIEW IF NOT EXISTS segment_profiles AS
SELECT m.segment, p.customer_id, p.email, p.first_name, p.last_name, p.city, p.country,
       p.birthday, p.lifetime_value, p.loyalty_tier
FROM segment_memberships AS m
JOIN customer_profiles AS p ON p.customer_id = m.customer_id;
