"""Parameters of the synthetic sources (``params.yaml`` section ``synthetic``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SyntheticParams(BaseModel):
    """The synthetic 300W-LP / AFLW2000-3D style sources rendered from the face model.

    Every random draw is keyed by ``seed`` (training sample ``i``: ``(seed, 0, i)``; test
    sample ``i``: ``(seed, 1, i)``), so the same parameters give byte-identical files.

    Pose: ``|yaw|`` is uniform on ``[0, yaw_core_deg]`` with probability ``1 - yaw_tail_prob``
    and uniform on ``[yaw_core_deg, yaw_max_deg]`` otherwise (300W-LP's spread: most faces
    within +-60 degrees, some to +-90); pitch and roll are normal, clipped.
    """

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, ge=0, description="seed of the synthetic draws")
    n_train: int = Field(48, ge=0, description="synthetic 300W-LP samples")
    n_test: int = Field(16, ge=0, description="synthetic AFLW2000-3D samples")
    image_size: int = Field(
        450, ge=64, le=2048, description="side of the square source images, pixels"
    )
    yaw_max_deg: float = Field(90.0, ge=0, le=90, description="largest |yaw|, degrees")
    yaw_core_deg: float = Field(
        60.0, ge=0, le=90, description="|yaw| of most faces (uniform within it), degrees"
    )
    yaw_tail_prob: float = Field(
        0.2, ge=0, le=1, description="probability of a yaw beyond yaw_core_deg"
    )
    pitch_std_deg: float = Field(10.0, ge=0, le=45, description="pitch spread (normal), degrees")
    pitch_max_deg: float = Field(30.0, ge=0, le=60, description="pitch clip, degrees")
    roll_std_deg: float = Field(8.0, ge=0, le=45, description="roll spread (normal), degrees")
    roll_max_deg: float = Field(25.0, ge=0, le=60, description="roll clip, degrees")
    scale_min: float = Field(1.0e-3, gt=0, description="Pose_Para s; 1.3e-3 is a ~200 px wide face")
    scale_max: float = Field(1.6e-3, gt=0, description="largest Pose_Para s")
    shift_px: float = Field(20.0, ge=0, description="max face-centre offset from the image centre")
    shape_sigma: float = Field(
        1.0, ge=0, le=3, description="identity draws: N(0, (shape_sigma * shapeEV)^2)"
    )
    exp_sigma: float = Field(
        1.0, ge=0, le=3, description="expression draws: N(0, (exp_sigma * expEV)^2)"
    )
    ambient_min: float = Field(0.30, ge=0, le=2, description="least ambient light")
    ambient_max: float = Field(0.65, ge=0, le=2, description="most ambient light")
    diffuse_min: float = Field(0.35, ge=0, le=2, description="least diffuse light")
    diffuse_max: float = Field(0.85, ge=0, le=2, description="most diffuse light")
    jpeg_quality_min: int = Field(
        80, ge=1, le=100, description="lowest JPEG quality of a source image"
    )
    jpeg_quality_max: int = Field(
        97, ge=1, le=100, description="highest JPEG quality of a source image"
    )

    @model_validator(mode="after")
    def _ranges(self) -> SyntheticParams:
        for lo, hi in (
            ("yaw_core_deg", "yaw_max_deg"),
            ("scale_min", "scale_max"),
            ("ambient_min", "ambient_max"),
            ("diffuse_min", "diffuse_max"),
            ("jpeg_quality_min", "jpeg_quality_max"),
        ):
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(
                    f"{lo} ({getattr(self, lo)}) must not exceed {hi} ({getattr(self, hi)})"
                )
        return self
