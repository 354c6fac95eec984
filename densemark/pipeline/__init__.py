"""The stage registry: every pipeline stage declared once.

A :class:`Stage` names the function it runs, the paths it reads and writes (each with its
place in the pipeline's layout and its ``densemark <stage>`` option), the ``params.yaml``
sections it reads, its metrics and plots and the package parts whose code it runs. Everything
that wires stages together is derived from :data:`STAGES`:

- ``dvc.yaml`` (:func:`dvc_yaml`, written by ``densemark dvc-yaml``; a test checks the committed
  file field by field);
- the CLI's path options and their defaults (:func:`add_path_options`, :func:`paths_from_args`);
- the flows' layout (:data:`LAYOUT`), their task inputs / outputs and the code their cache keys
  cover (:meth:`Stage.io`, :attr:`Stage.code`).

Every stage runs through :meth:`Stage.run` ``(params, paths) -> StageResult``: the stage
function is called with its own section(s) and paths, and the metrics file is written when the
stage names one. The CLI and the flows call nothing else.

>>> STAGES["template"].cmd()
'densemark template --model-dir data/model --out data/template --report reports/template.json --metrics metrics/template.json'
>>> [s.name for s in STAGES.values()][:4]
['model', 'template', 'synth_300wlp', 'synth_aflw2000']
"""

from densemark.pipeline.dvc import dvc_stage, dvc_yaml
from densemark.pipeline.stage import Slot, Stage, add_path_options, paths_from_args, run_from_args
from densemark.pipeline.stages import LAYOUT, STAGES

__all__ = [
    "LAYOUT",
    "STAGES",
    "Slot",
    "Stage",
    "add_path_options",
    "dvc_stage",
    "dvc_yaml",
    "paths_from_args",
    "run_from_args",
]
