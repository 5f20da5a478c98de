"""A package, so that unit and integration test modules may share a name (test_verify.py)."""
