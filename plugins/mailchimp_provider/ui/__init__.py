"""The "Mailchimp exports" page: run history, trends and rejected profiles in the Airflow UI."""
