"""Admin for messages (read-only) with the retry action."""
