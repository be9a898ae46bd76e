"""Tracking: the one door to MLflow.

tracker.py (Tracker, its no-op twin NullTracker; the only module that imports mlflow),
names.py (tags and MLflow-safe metric names), run_log.py (what a run logs), runs.py (runs read
back as a DataFrame for the report).
"""
