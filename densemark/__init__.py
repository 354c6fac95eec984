"""densemark: dense 3D facial-landmark datasets from UV position maps.

Pipeline (one stage per subpackage, data flows one way):

``faces``     the morphable model, its readers, pose/crop geometry, UV position maps
``sampling``  dense landmark sets on the 43,867-vertex face template
``datasets``  sources (300W-LP, AFLW2000-3D, synthetic), labels, flips, shards
``train``     regressors, losses, evaluation
``flows``     Prefect flows over the same stage functions
"""

__version__ = "0.1.0"
