"""``vilab ring``: the ring mixture (EM, the ELBO choices and their limits, KL asymmetry)."""
