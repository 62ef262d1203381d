"""Feature: administration of users, facilities, items and the ledger check."""
