"""Reading a study from its run records: rows of metrics.json (``rows``), configurations over
seeds, comparisons with Welch's test, the epoch budget and plateau, the teacher margin, and the
study's summary and verdict.

Imports only ``core``; torch-free.
"""
