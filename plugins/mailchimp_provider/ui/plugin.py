"""The Airflow plugin that adds the "Mailchimp exports" page to the UI's Browse menu."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from mailchimp_provider.ui.app import URL_PREFIX, app


class MailchimpExportsPlugin(AirflowPlugin):
    """A FastAPI app served by the API server, shown inside the UI as an external view (iframe)."""

    name = "mailchimp_exports"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Mailchimp exports"}]
    external_views = [
        {
            "name": "Mailchimp exports",
            "href": f"{URL_PREFIX}/",
            "url_route": "mailchimp-exports",
            "destination": "nav",
            "category": "browse",
        }
    ]
