"""Prints what the deployment steps left in Airflow's metadata database, as JSON: the mailchimp_api pool,
the connections (type, host) and which DAGs are paused. With a host argument, then sets mailchimp_default's
host to it, as a user editing the connection in the UI would.

Usage: airflow_state.py [NEW_MAILCHIMP_HOST]   (run with the Airflow environment under test)
"""

from __future__ import annotations

import json
import sys

from airflow.models import DagModel, Pool
from airflow.models.connection import Connection  # the ORM model: this reads the metadata DB
from airflow.utils.session import create_session

with create_session() as session:
    pool = session.query(Pool).filter_by(pool="mailchimp_api").one_or_none()
    state = {
        "pool": [pool.slots, pool.include_deferred] if pool else None,
        "connections": {c.conn_id: [c.conn_type, c.host] for c in session.query(Connection)},
        "paused": {d.dag_id: d.is_paused for d in session.query(DagModel)},
    }
    print(json.dumps(state))
    if len(sys.argv) > 1:
        session.query(Connection).filter_by(conn_id="mailchimp_default").one().host = sys.argv[1]
