"""The sandbox provider (DESIGN §10): a fictitious Vonage account where nothing leaves the machine.

An app of its own, installed only when `SMS_PROVIDER` is `sandbox`: a Vonage deployment has no
sandbox tables and no sandbox admin. The gateway's `get_provider()` is its only importer.
"""
