"""Tracking: the one door to MLflow.

tracker.py (Tracker, its no-op twin NullTracker) and store.py (opening a store under a lock,
dataset sources) are the only modules that import mlflow; names.py (the catalogue of tag and
metric names that writers and readers share, with the map from older stores' names; secret
masking), run_log.py (what a run logs), sweep_log.py (what a sweep's points and parent log),
runs.py (runs and graded samples read back for the report).
"""
