"""Parameters of the Prefect flows (``params.yaml`` section ``flows``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FlowParams(BaseModel):
    """How the flows run their tasks (the stages' own parameters live in their sections).

    ``address`` names the scheduler of an existing ``dask.distributed`` cluster
    (``tcp://host:8786``); with ``null`` the build flow starts a ``LocalCluster`` of
    ``n_workers`` workers (``processes: false`` = threads in this process). The chunks the
    build maps over come from the build plan, so the shards do not depend on these values
    (``chunks_per_task`` only groups them into tasks).
    """

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(
        None, min_length=1, description="dask scheduler address; null = LocalCluster"
    )
    n_workers: int = Field(2, ge=1, le=1024, description="LocalCluster workers")
    threads_per_worker: int = Field(
        1, ge=1, le=64, description="threads of each LocalCluster worker"
    )
    processes: bool = Field(True, description="LocalCluster workers as processes (false: threads)")
    chunks_per_task: int = Field(
        0,
        ge=0,
        le=1024,
        description="build chunks one Dask task writes (each task costs Prefect about 0.15-0.3 s of "
        "bookkeeping); 0 = auto: up to 8, keeping at least 8 tasks per worker",
    )
    retries: int = Field(2, ge=0, le=20, description="retries of a failed task")
    retry_delay_s: float = Field(
        2.0,
        ge=0,
        le=3600,
        allow_inf_nan=False,
        description="seconds between retries of a failed task",
    )
