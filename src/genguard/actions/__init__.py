"""genguard.actions package."""
