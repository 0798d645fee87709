"""Evaluation harnesses: PII scrubbing and cluster quality on labelled data."""
