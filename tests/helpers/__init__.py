"""Helpers shared by test modules (imported as ``tests.helpers.<module>``); fixtures are in conftest.py."""
