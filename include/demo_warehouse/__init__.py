"""Demo customer data platform warehouse: seeding and simulated refreshes for the Mailchimp export demo."""

from demo_warehouse.refresh import refresh_segments
from demo_warehouse.seed import seed_warehouse

__all__ = ["refresh_segments", "seed_warehouse"]
