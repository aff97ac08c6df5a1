"""``vilab reparam``: the reparameterised samplers against torch's, by KS and chi-square tests."""
