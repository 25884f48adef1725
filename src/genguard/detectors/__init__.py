"""genguard.detectors package."""
