"""Shared parts of the end-to-end suite and `make demo`: a private Prosody, a recording push
service, Web Push verification with independent implementations, and slixmpp helpers."""
