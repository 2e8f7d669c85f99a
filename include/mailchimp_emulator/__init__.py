"""A local Mailchimp Marketing API v3 server for development and tests (see README.md in this folder).

Run it with `python -m mailchimp_emulator` / `mailchimp-emulator`; drive it from tests with
`mailchimp_emulator.testing.EmulatorProcess`.
"""
