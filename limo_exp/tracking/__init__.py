"""Tracking: the one door to MLflow.

tracker.py (Tracker, its no-op twin NullTracker) and store.py (opening a store under a lock,
dataset sources) are the only modules that import mlflow; names.py (tags, MLflow-safe metric
names, secret masking), run_log.py (what a run logs), runs.py (runs and graded samples read back
for the report).
"""
