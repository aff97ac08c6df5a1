"""``vilab catalog``: convert a CSV catalog to Parquet, or simulate one of any size (run.py)."""
