"""tickwise."""
