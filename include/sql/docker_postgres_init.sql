-- Run once by the postgres image on an empty data volume (docker-compose.yaml mounts it into
-- /docker-entrypoint-initdb.d). POSTGRES_DB is Airflow's metadata database; the demo warehouse
-- gets its own database, owned by the same user, and airflow-init seeds it.
CREATE DATABASE warehouse;
