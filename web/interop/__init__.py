"""Data given to and taken from the rest of the health system: spreadsheets, FHIR and DHIS2.

Every entry point is a plain function taking a Session, so that the command line (web/cli_interop.py)
and the web API can share it; the caller owns the transaction.
"""
