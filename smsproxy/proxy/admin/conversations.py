"""Admin for conversations and participants."""
