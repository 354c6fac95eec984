"""Package layout that pyproject.toml cannot state: ship the repository's ``blender_scripts/``
folder inside the package, as ``densemark/sampling/blender_scripts/`` (found there by
``densemark.sampling.blender.scripts_dir``), so that an installed densemark can run them.
Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["densemark*"]), "densemark.sampling.blender_scripts"],
    package_dir={"densemark.sampling.blender_scripts": "blender_scripts"},
)
