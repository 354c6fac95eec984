"""Small, slow, obviously-correct reference implementations the fast paths are checked against
(tests and benchmarks use them; the pipeline never does): the naive per-triangle UV rasterizer,
face3d's pose and crop step by step, position maps by barycentric gathering, Umeyama's
similarity, the 3DDFA rotation written out, and optimal (Hungarian) mirror matching."""
