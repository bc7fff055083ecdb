"""The HTTP service: its guards, API models, serving state, the app and its load test."""
