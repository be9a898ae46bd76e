"""Analysis: what the report computes and draws from the runs of a study (read through
``limo_exp.tracking.runs``): curves.py, tables.py, report.py."""
