"""Airflow provider for exporting warehouse segments to Mailchimp audiences."""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """Provider metadata read by Airflow's providers manager (entry point ``apache_airflow_provider``)."""
    integration = "Mailchimp"
    return {
        "package-name": "airflow-provider-mailchimp-segments",
        "name": "Mailchimp",
        "description": "Export warehouse customer segments to Mailchimp audiences with batch jobs.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": integration,
                "external-doc-url": "https://mailchimp.com/developer/marketing/api/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": integration,
                "python-modules": [
                    "mailchimp_provider.hooks.mailchimp",
                    "mailchimp_provider.hooks.mailchimp_async",
                ],
            }
        ],
        "operators": [
            {"integration-name": integration, "python-modules": ["mailchimp_provider.operators.batch"]}
        ],
        "triggers": [
            {"integration-name": integration, "python-modules": ["mailchimp_provider.triggers.batch"]}
        ],
        "connection-types": [
            {
                "hook-class-name": "mailchimp_provider.hooks.mailchimp.MailchimpHook",
                "hook-name": "Mailchimp",
                "connection-type": "mailchimp",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port"],
                    "relabeling": {"password": "API key", "host": "Base URL (optional)"},
                    "placeholders": {
                        "host": "leave empty for https://<dc>.api.mailchimp.com; http://127.0.0.1:8025 for "
                        "the local server",
                        "password": "0123456789abcdef0123456789abcdef-us6",
                        "description": "Display name, e.g. 'Marketing Mailchimp (EU brand)'",
                    },
                },
                "conn-fields": {
                    "oauth_token": {
                        "label": "OAuth access token",
                        "description": "Instead of an API key: a Mailchimp OAuth 2 token (never expires).",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "data_center": {
                        "label": "Data center",
                        "description": "Optional, e.g. us6. Derived from the key's suffix, or for tokens "
                        "from Mailchimp's OAuth metadata endpoint.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "oauth_metadata_url": {
                        "label": "OAuth metadata URL",
                        "description": "Where tokens' data centers are looked up; only change it for the "
                        "local Mailchimp server.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "privacy_consent": {
                        "label": "I agree: data privacy",
                        "description": "Profiles' personal data is sent to Mailchimp, outside the "
                        "warehouse's compliance boundary. Exports refuse to run until this is ticked.",
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                    "allowed_exports": {
                        "label": "Who may use this connection",
                        "description": "Comma-separated export names or DAG ids allowed to use it; * for all.",
                        "schema": {"type": ["string", "null"]},
                    },
                },
            }
        ],
    }
