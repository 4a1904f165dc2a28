"""Serving a loaded version: batching, streams, checks and the steps a request runs through."""
