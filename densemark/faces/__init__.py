"""The face model and its geometry: readers, posing, cropping, UV position maps.

Knows nothing of datasets.
"""
