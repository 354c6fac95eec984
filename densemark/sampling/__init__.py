"""Dense landmark sets on the face template.

``landmark_set``  the versioned set artifact (``LandmarkSet``, ``make_set``, ``edit``, ``diff_ids``)
``symmetry``      the template's mirror map and the mirror matching of a set
``delaunay``      iterative Delaunay centroid sampling (the paper's method)
``fps``           farthest-point fill / thin on the template surface
``relax``         Lloyd (centroidal Voronoi) relaxation of the non-keypoint landmarks
``sampler``       the whole sampler (``sample_set``) driven by ``SampleParams``
``regions``       rim distance / rim points and face regions of landmarks
``compare``       coverage / spacing / symmetry / overlap / matching / rim / region report and plot
``seed_import``   the paper's published 520-landmark set as a ``LandmarkSet``
``stages``        stage functions (``run_sample``, ``run_compare``, ``run_import_seed``)
"""
