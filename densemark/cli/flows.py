"""``densemark flow <name>`` runs a Prefect flow here; ``densemark serve`` serves them as deployments.

Both talk to the Prefect API at ``PREFECT_API_URL`` (a ``prefect server start``); without one,
``flow`` starts a temporary local server for the run.
"""

from __future__ import annotations

import argparse
import json

import yaml

NAMES = ("prepare", "build", "card", "train", "pipeline")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "flow",
        help="run a Prefect flow (prepare | build | card | train | pipeline) over the registry stages",
    )
    p.add_argument("name", choices=NAMES)
    p.add_argument(
        "--root",
        default=None,
        help="folder the pipeline paths are relative to (default: the params file's)",
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a parameter (YAML value), e.g. --set flows.n_workers=4")  # fmt: skip
    p.set_defaults(func=_flow)

    s = sub.add_parser(
        "serve", help="serve the flows as Prefect deployments runnable from the UI (blocks)"
    )
    s.add_argument(
        "--flows",
        nargs="+",
        choices=NAMES,
        default=list(NAMES),
        help="flows to serve (default: all)",
    )
    s.add_argument("--limit", type=int, default=None, help="at most this many runs at once")
    s.set_defaults(func=_serve)


def parse_overrides(items: list[str]) -> dict:
    """``["flows.n_workers=4"]`` -> ``{"flows": {"n_workers": 4}}`` (values parsed as YAML)."""
    out: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not section or not name:
            raise SystemExit(f"densemark: error: --set expects SECTION.KEY=VALUE, got {item!r}")
        out.setdefault(section, {})[name] = yaml.safe_load(value)
    return out


def _flow(args: argparse.Namespace) -> int:
    from prefect import tags

    from densemark.flows.deploy import FLOWS

    with tags("densemark", args.name):  # as the deployments' runs are tagged
        res = FLOWS[args.name](
            params_path=args.params,
            root=args.root,
            overrides=parse_overrides(args.overrides) or None,
        )
    summary = {k: v for k, v in res.items() if k not in ("markdown", "manifest", "report")}
    print(json.dumps(summary, indent=1, sort_keys=True, default=str)[:4000])
    return 0


def _serve(args: argparse.Namespace) -> int:
    from densemark.flows.deploy import serve_flows

    serve_flows(args.flows, args.params, limit=args.limit)
    return 0
