"""Subcommands ``densemark sample`` and ``densemark landmarks compare | import-seed``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import get_args

from pydantic import ValidationError

from densemark.config import load_params
from densemark.core.errors import ConfigError
from densemark.pipeline import STAGES, add_path_options, run_from_args
from densemark.sampling import stages
from densemark.sampling.params import SampleParams

# CLI option -> SampleParams field; each overrides the params file's value when given
_SAMPLE_OPTIONS = (
    "name",
    "rounds",
    "space",
    "symmetric",
    "target_count",
    "boundary_seeds",
    "fill",
    "seed",
)


def _count_or_none(text: str) -> int | None:
    return None if text.lower() in ("none", "null") else int(text)


def sample_params(base: SampleParams, overrides: dict) -> SampleParams:
    """The ``sample`` section ``base`` with the given CLI values put over it.

    Raises:
        ConfigError: a value out of bounds, naming the option.
    """
    if not overrides:
        return base
    try:
        return SampleParams.model_validate({**base.model_dump(), **overrides})
    except ValidationError as exc:
        lines = [f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None


def _sample(args: argparse.Namespace) -> int:
    if args.params is None:
        print(
            "densemark: note: no params.yaml here: using the built-in sample defaults (those of the shipped params.yaml)",
            file=sys.stderr,
        )
    params = load_params(args.params)
    sample = sample_params(
        params.sample, {k: getattr(args, k) for k in _SAMPLE_OPTIONS if hasattr(args, k)}
    )
    res = run_from_args(STAGES["sample"], args, params.model_copy(update={"sample": sample}))
    r = res.report_dict()
    print(
        f"{args.out}: {r['final']} landmarks (rounds {r['counts']}, sha256 {r['set_sha256'][:12]})"
    )
    return 0


def _compare(args: argparse.Namespace) -> int:
    res = run_from_args(STAGES["compare"], args, load_params(args.params))
    print(res.value)
    return 0


def _import_seed(args: argparse.Namespace) -> int:
    res = stages.run_import_seed(args.seed_dir, args.template, args.out, name=args.name)
    print(f"{args.out}: " + json.dumps(res.report))
    return 0


def landmark_tools(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The ``landmarks`` subcommand's own subparsers, created on first use.

    Other parts add their tools here (``landmark_tools(sub).add_parser(...)``) instead of
    registering a second ``landmarks`` command.
    """
    lm = sub.choices.get("landmarks")
    if lm is None:
        lm = sub.add_parser("landmarks", help="landmark-set tools")
        lm.set_defaults(
            _landmark_tools=lm.add_subparsers(
                dest="landmarks_command", required=True, metavar="<tool>"
            )
        )
    return lm.get_default("_landmark_tools")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``sample`` and ``landmarks`` to the top-level subparsers."""
    p = sub.add_parser(
        "sample", help="sample a dense landmark set on the face template (params: sample)"
    )
    add_path_options(p, STAGES["sample"])
    o = p.add_argument_group("sampler choices (override params.yaml's sample section)")
    o.argument_default = argparse.SUPPRESS  # absent unless given
    o.add_argument("--name", help="set name")
    o.add_argument("--rounds", type=int, help="Delaunay centroid rounds")
    o.add_argument(
        "--space",
        choices=get_args(SampleParams.model_fields["space"].annotation),
        help="triangulation space",
    )
    o.add_argument(
        "--symmetric", action=argparse.BooleanOptionalAction, help="exact mirror-symmetric set"
    )
    o.add_argument(
        "--target-count",
        type=_count_or_none,
        metavar="N|none",
        help="fill or thin to N points (none: keep the Delaunay count)",
    )
    o.add_argument(
        "--boundary-seeds", type=int, metavar="N", help="extra seeds on the template rim"
    )
    o.add_argument(
        "--fill",
        choices=get_args(SampleParams.model_fields["fill"].annotation),
        help="distance of the FPS fill/thin",
    )
    o.add_argument("--seed", type=int, help="tie-break seed of farthest-point sampling")
    p.set_defaults(func=_sample)

    lsub = landmark_tools(sub)
    c = lsub.add_parser("compare", help="compare two landmark sets on the template")
    add_path_options(c, STAGES["compare"])
    c.set_defaults(func=_compare)
    i = lsub.add_parser("import-seed", help="import the paper's published 520-landmark set")
    i.add_argument(
        "--seed-dir",
        required=True,
        help="folder with vertices_520_sel_from_blender.txt, vertices_68_fil_520.txt",
    )
    i.add_argument("--template", required=True, help="template folder")
    i.add_argument("--out", required=True, help="landmark-set JSON to write")
    i.add_argument("--name", default="basak2023-520", help="set name (default: basak2023-520)")
    i.set_defaults(func=_import_seed)
