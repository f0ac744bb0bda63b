"""Mapping templates (JSON), installed as package data."""
