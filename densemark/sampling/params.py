"""Parameters of the ``sample`` stage (``params.yaml`` section ``sample``).

The paper's procedure (Basak et al. 2023): Delaunay triangulation of seed keypoints, triangle
centroids added for 3 rounds. The paper's text says "18 key points across the jaw and one on
the nose tip" while the 68-point scheme has 17 jaw points (0..16) and its figure also shows
forehead points: the seed list is a parameter (default: jaw 0..16 + nose tip 30),
``boundary_seeds`` adds points on the template rim (forehead included), and every choice is
recorded in the set's provenance.

The defaults are the configuration closest to the paper's published, hand-corrected 520: the
rounds, the 68 keypoints, a symmetric geodesic farthest-point fill to 520, then a Lloyd
relaxation (``relax``, :mod:`densemark.sampling.relax`) of the non-keypoint landmarks over the
UV map above the jaw line, from an even farthest-point start, kept 3 UV px off the rim. The paper-literal configuration (rounds +
fill, no relaxation) is ``relax: {iterations: 0}``; ``symmetric: false`` and
``target_count: null`` give the plain rounds.

The defaults equal the ``sample`` section of the shipped ``params.yaml`` (a test holds them
together), so ``densemark sample`` without a params file makes the same set as ``dvc repro``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

JAW_AND_NOSE_TIP = tuple(range(17)) + (30,)


class RelaxParams(BaseModel):
    """Lloyd relaxation of the non-keypoint landmarks after the fill (``sample.relax``)."""

    model_config = ConfigDict(extra="forbid")

    iterations: int = Field(
        60,
        ge=0,
        le=1000,
        description="most Lloyd iterations; 0: no relaxation (the paper's procedure)",
    )
    space: Literal["uv", "uv-area", "frontal"] = Field(
        "uv",
        description="uv: even over UV pixels; uv-area: UV cells, pixels weighted by their 3D area; "
        "frontal: even over the template's frontal (x, y) view",
    )
    domain: Literal["face", "jaw"] = Field(
        "jaw",
        description="face: every template pixel; jaw: the pixels on or above the jaw keypoints' line",
    )
    rim_margin: float = Field(
        3.0,
        ge=0.0,
        le=32.0,
        description="relaxed landmarks keep a UV distance > this from off-face pixels (px)",
    )
    init: Literal["set", "spread"] = Field(
        "spread",
        description="set: start from the sampled landmarks; spread: re-place the free ones by farthest-point "
        "sampling over the allowed pixels first (an even start)",
    )
    tol: float = Field(
        0.01,
        gt=0.0,
        le=10.0,
        description="stop once no landmark moves this far in an iteration (grid steps; UV px)",
    )


class SampleParams(BaseModel):
    """Dense landmark sampling on the face template."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        "delaunay-dense",
        min_length=1,
        max_length=200,
        description="name recorded in the landmark-set file",
    )
    seeds: list[int] = Field(
        default_factory=lambda: list(JAW_AND_NOSE_TIP),
        min_length=3,
        description="seed keypoints, indices 0..67 into the template's 68 keypoints",
    )
    seed_ids: list[int] = Field(
        default_factory=list, description="extra seeds as template vertex ids"
    )
    boundary_seeds: int = Field(
        0, ge=0, le=200, description="extra seeds spread on the template rim (FPS)"
    )
    rounds: int = Field(3, ge=0, le=8, description="Delaunay centroid rounds")
    space: Literal["uv", "frontal", "geodesic"] = Field(
        "uv",
        description="uv: triangulate UV pixels, centroid snapped to a pixel; frontal: triangulate the "
        "template's frontal (x, y) projection; geodesic: triangulate in UV, place the new point at "
        "the 3D centroid of the triangle's corners snapped to the nearest template vertex",
    )
    symmetric: bool = Field(
        True, description="sample one half + midline and mirror: exact mirror pairs"
    )
    include_kpt68: bool = Field(True, description="force the 68 keypoints into the set")
    target_count: int | None = Field(
        520,
        ge=3,
        description="fill (FPS) or thin (FPS) to exactly this count (null: keep the Delaunay count); "
        "at most the vertex count of the template in use, checked when sampling",
    )
    fill: Literal["fps-geodesic", "fps-euclidean"] = Field(
        "fps-geodesic",
        description="distance of the farthest-point fill/thin: mesh-edge geodesic or 3D",
    )
    seed: int = Field(0, ge=0, description="breaks exact distance ties in farthest-point sampling")
    relax: RelaxParams = Field(
        default_factory=RelaxParams, description="Lloyd relaxation after the fill"
    )
