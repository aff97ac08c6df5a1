"""``vilab gradvar``: gradient variance of each estimator on four test beds (cases.py)."""
