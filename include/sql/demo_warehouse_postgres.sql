-- Demo customer data platform warehouse, PostgreSQL flavour.
-- Read by demo_warehouse.seed; keep semicolons out of comments and string literals.
-- No foreign key from memberships to profiles: warehouses rarely enforce one, and the
-- export has to cope with a membership whose profile is gone.
-- Keys are COLLATE "C": the ids are ASCII, and byte order makes loading and joining faster.

CREATE TABLE IF NOT EXISTS customer_profiles (
    customer_id    TEXT COLLATE "C" PRIMARY KEY,
    email          TEXT,
    first_name     TEXT,
    last_name      TEXT,
    city           TEXT,
    country        TEXT NOT NULL CHECK (length(country) = 2),
    birthday       DATE,
    lifetime_value NUMERIC(12, 2) NOT NULL DEFAULT 0,
    loyalty_tier   TEXT NOT NULL CHECK (loyalty_tier IN ('bronze', 'silver', 'gold', 'platinum')),
    signup_date    DATE NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS segments (
    segment      TEXT COLLATE "C" PRIMARY KEY,
    description  TEXT NOT NULL,
    refreshed_at TIMESTAMPTZ NOT NULL
);

-- The primary key is the index on segment (its leading column), so no second index is needed.
CREATE TABLE IF NOT EXISTS segment_memberships (
    segment     TEXT COLLATE "C" NOT NULL,
    customer_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (segment, customer_id)
);

CREATE OR REPLACE VIEW segment_profiles AS
SELECT m.segment, p.customer_id, p.email, p.first_name, p.last_name, p.city, p.country,
       p.birthday, p.lifetime_value, p.loyalty_tier
FROM segment_memberships AS m
JOIN customer_profiles AS p ON p.customer_id = m.customer_id;
