-- Drops the demo warehouse (seed-demo-warehouse --drop). Same for SQLite and PostgreSQL.
DROP VIEW IF EXISTS segment_profiles;
DROP TABLE IF EXISTS segment_memberships;
DROP TABLE IF EXISTS segments;
DROP TABLE IF EXISTS customer_profiles;
