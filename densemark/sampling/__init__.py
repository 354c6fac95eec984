"""Dense landmark sets on the face template.

``landmark_set``  the versioned set artifact (``LandmarkSet``, ``make_set``, ``edit``, ``diff_ids``)
``symmetry``      the template's mirror map and the mirror matching of a set
``delaunay``      iterative Delaunay centroid sampling (the paper's method)
``fps``           farthest-point fill / thin on the template surface
``sampler``       the whole sampler (``sample_set``) driven by ``SampleParams``
``compare``       coverage / spacing / symmetry / overlap report and plot of two sets
``seed_import``   the paper's published 520-landmark set as a ``LandmarkSet``
``stages``        stage functions (``run_sample``, ``run_compare``, ``run_import_seed``)
"""
