"""Feature: flags and cases, as auditors review them (pages) and as the API and CLI act on them (service)."""
