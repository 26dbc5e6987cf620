"""Admin for the number pool (numbers) and the provisioning jobs that rent them (jobs)."""

from smsproxy.numbers.admin import jobs, numbers  # noqa: F401
