"""The only package that talks to the Kubernetes API server.

Everything above it (handlers, CLI) asks it to read, apply, patch status and post Events;
everything below it (planning, conditions, api) never sees a client.
"""
