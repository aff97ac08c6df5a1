"""``vilab earthquake``: CAVI beside SVI on a catalog (run.py), its plots and diagnostics."""
