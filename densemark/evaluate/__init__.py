"""Evaluation: the AFLW2000-3D protocol of 3DDFA's benchmark (68 and AFLW's 21 points, yaw
bins), dense NME on the held-out shards, CED curves and a results table beside published rows.

Any predictor is scored through one predictions file format (:mod:`.predictions`); our own
model writes the same format (:mod:`.stages`).
"""
