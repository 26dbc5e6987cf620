"""Admin for the number pool and provisioning jobs."""
