"""Feature: a facility's stock as its manager reads it (stock at a glance, the stock card)."""
