"""Data: face extraction, dataset builders, input pipeline, degradations."""
