"""Benchmarks of channelserver against Uvicorn, Daphne and the parsers' own cost (``make bench``)."""
