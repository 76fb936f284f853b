"""Adapters: turn what a licensed site writes (logs, APIs) into tokenpool's inputs."""
