"""Sources of 3DMM-fit samples: readers of 300W-LP / AFLW2000-3D folders and the synthetic
sources that write those formats from the embedded model."""
