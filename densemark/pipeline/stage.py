"""What a stage declares (:class:`Slot`, :class:`Stage`) and the CLI helpers built on it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from densemark.core.report import StageResult

if TYPE_CHECKING:
    import argparse

    from densemark.config import Params

PathLike = str | os.PathLike

Role = Literal["dep", "out", "metrics", "plot"]


@dataclass(frozen=True)
class Slot:
    """One path a stage reads or writes.

    Attributes:
        key: its name in the stage's paths (``Stage.run``'s ``paths``, the flow task's
            ``inputs`` / ``outputs``) and the CLI option's ``dest``.
        path: where the pipeline keeps it, relative to the root.
        role: ``dep`` (input), ``out`` (cached output), ``metrics`` (DVC metrics file, not
            cached) or ``plot``.
        option: the ``densemark <stage>`` option (``--out``); None: a positional argument.
        in_cmd: False for an input the command reads through its params (the model folder of
            ``build``), so ``dvc.yaml`` lists it as a dependency only.
        param: a ``section.key`` whose value the CLI and the flows use for this path (the
            pipeline's ``params.yaml`` sets it to :attr:`path`).
        cli_default: whether the CLI option defaults to :attr:`path` (side files such as
            reports and metrics are written only when asked for).
        plot: DVC plot properties (``x``, ``y``).
        files: the files DVC tracks inside an output folder, when not the whole folder (the
            ``train`` stage's ``models/`` also receives the export's ONNX file).
        help: the CLI option's help.
    """

    key: str
    path: str
    role: Role
    option: str | None = None
    in_cmd: bool = True
    param: str | None = None
    cli_default: bool = True
    plot: dict[str, str] | None = None
    files: tuple[str, ...] = ()
    help: str = ""

    def tracked(self, path: PathLike | None = None) -> dict[str, str]:
        """``{name: path}`` of what DVC tracks (and a flow stamps) for this slot at ``path``."""
        p = os.fspath(self.path if path is None else path)
        if not self.files:
            return {self.key: p}
        return {f"{self.key}/{f}": os.fspath(Path(p) / f) for f in self.files}


def dep(key: str, path: str, option: str | None = None, **kw: Any) -> Slot:
    """An input path."""
    return Slot(key, path, "dep", option, **kw)


def out(key: str, path: str, option: str | None = None, **kw: Any) -> Slot:
    """An output DVC caches."""
    return Slot(key, path, "out", option, **kw)


def metrics(path: str, option: str = "--metrics", **kw: Any) -> Slot:
    """The stage's DVC metrics file (in git, not cached; written only when asked for)."""
    return Slot("metrics", path, "metrics", option, cli_default=False, **kw)


def plot(key: str, path: str, option: str, **kw: Any) -> Slot:
    """A DVC plot file (written only when asked for)."""
    return Slot(key, path, "plot", option, cli_default=False, **kw)


Runner = Callable[..., StageResult]


@dataclass(frozen=True)
class Stage:
    """One pipeline stage (a ``dvc.yaml`` stage, a flow task, a ``densemark`` subcommand).

    Attributes:
        name: the ``dvc.yaml`` stage name and the flow task name.
        command: the ``densemark`` subcommand (``synth-300wlp``, ``landmarks compare``).
        function: ``module:function`` of the stage function (for readers; :attr:`runner` calls it).
        runner: ``(params, paths, **extra) -> StageResult``: calls the stage function with its
            section(s) and the named paths.
        slots: its paths, in the order ``dvc.yaml`` lists them.
        params: the ``params.yaml`` keys it reads (sections, or ``section.key``).
        code: the package parts whose code it runs (``dvc.yaml`` dependencies, flow cache keys).
        cli: the CLI module that fronts it (a ``dvc.yaml`` dependency too).
        doc: comment written above the stage in ``dvc.yaml``.
        argv: the slot keys in command-line order, where it differs from :attr:`slots`.
        checks_only: true for params under which the stage reads its outputs instead of
            writing them (``model`` with a real model: it only checks the files load).
    """

    name: str
    command: str
    function: str
    runner: Runner
    slots: tuple[Slot, ...]
    params: tuple[str, ...] = ()
    code: tuple[str, ...] = ("core",)
    cli: str = ""
    doc: str = ""
    argv: tuple[str, ...] = ()
    checks_only: Callable[[Params], bool] | None = None

    def slot(self, key: str) -> Slot:
        """The slot named ``key``."""
        for s in self.slots:
            if s.key == key:
                return s
        raise KeyError(f"stage {self.name!r} has no path {key!r}")

    def of(self, *roles: Role) -> list[Slot]:
        """The slots of the given roles, in ``dvc.yaml`` order."""
        return [s for s in self.slots if s.role in roles]

    @property
    def sections(self) -> tuple[str, ...]:
        """The params sections it reads (``train.onnx_opset`` -> ``train``)."""
        return tuple(dict.fromkeys(p.split(".")[0] for p in self.params))

    def cmd_slots(self) -> list[Slot]:
        """The slots in command-line order."""
        return [self.slot(k) for k in self.argv] if self.argv else list(self.slots)

    def cmd(self) -> str:
        """The command line ``dvc.yaml`` runs (pipeline paths)."""
        words = ["densemark", self.command]
        for s in self.cmd_slots():
            if s.in_cmd:
                words += [s.path] if s.option is None else [s.option, s.path]
        return " ".join(words)

    def deps(self) -> list[str]:
        """``dvc.yaml`` dependencies: input paths, then the code it runs."""
        return (
            [s.path for s in self.of("dep")]
            + [f"densemark/{c}" for c in self.code]
            + ["densemark/pipeline", self.cli]
        )

    def paths(self, params: Params | None = None, root: PathLike | None = None) -> dict[str, Path]:
        """Every path of the stage by key, as the pipeline lays it out (under ``root`` when given).

        A slot bound to a params key (``model.dir``) takes that value from ``params``.
        """
        base = Path(root) if root is not None else None
        out: dict[str, Path] = {}
        for s in self.slots:
            p = Path(param_value(params, s.param) if params is not None and s.param else s.path)
            out[s.key] = base / p if base is not None and not p.is_absolute() else p
        return out

    def io(
        self, paths: dict[str, PathLike | None], params: Params | None = None
    ) -> tuple[dict[str, str], dict[str, str]]:
        """(inputs, outputs) of a call on ``paths`` as ``{name: path}`` strings: what a flow task
        hashes and stamps (the files DVC tracks; side files not asked for are left out).

        With :attr:`checks_only` true for ``params``, the outputs are read, not written (the
        configured real model): they count as inputs.
        """
        given = {s.key: paths[s.key] for s in self.slots if paths.get(s.key) is not None}
        ins = {
            k: v
            for s in self.of("dep")
            if s.key in given
            for k, v in s.tracked(given[s.key]).items()
        }
        outs = {
            k: v
            for s in self.of("out", "metrics", "plot")
            if s.key in given
            for k, v in s.tracked(given[s.key]).items()
        }
        if params is not None and self.checks_only is not None and self.checks_only(params):
            ins.update(outs)
            outs = {}
        return ins, outs

    def out_folders(
        self, paths: dict[str, PathLike | None], params: Params | None = None
    ) -> list[tuple[Path, tuple[str, ...]]]:
        """The output folders of a call (``out`` slots without a file suffix) with the files the
        stage writes there when it shares the folder (:attr:`Slot.files`; empty: the whole
        folder is the stage's), which :meth:`run` holds
        (:func:`~densemark.core.outdir.claimed`); none when the stage only checks its outputs
        (:attr:`checks_only`)."""
        if params is not None and self.checks_only is not None and self.checks_only(params):
            return []
        return [
            (Path(paths[s.key]), s.files)
            for s in self.of("out")
            if paths.get(s.key) is not None and not Path(paths[s.key]).suffix
        ]

    def run(self, params: Params, paths: dict[str, PathLike | None], **extra: Any) -> StageResult:
        """Run the stage function on ``paths`` (keys of :attr:`slots`; a missing or None side
        file is not written) and write its metrics file when ``paths["metrics"]`` is given.

        Each output folder is held for the run: locked against a second writer, refused when it
        holds files another stage or tool wrote (:func:`~densemark.core.outdir.claimed`)."""
        from contextlib import ExitStack

        from densemark.core.outdir import claimed

        with ExitStack() as held:
            for folder, owned in self.out_folders(paths, params):
                held.enter_context(claimed(folder, self.name, owned))
            res = self.runner(
                params, {k: Path(v) for k, v in paths.items() if v is not None}, **extra
            )
        target = paths.get("metrics")
        if target is not None and "metrics" not in res.outputs:  # after the folders are released
            res.write_metrics(target)
            res.outputs["metrics"] = Path(target)
        return res


def param_value(params: Any, dotted: str) -> Any:
    """``params.model.dir`` for ``"model.dir"``."""
    obj = params
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


# ----------------------------------------------------------------------------- CLI helpers


def add_path_options(
    parser: argparse.ArgumentParser,
    stage: Stage,
    *,
    required: Iterable[str] = (),
    into: dict[str, Any] | None = None,
) -> None:
    """Add the stage's path options to its ``densemark`` subcommand, in command-line order.

    An option defaults to the pipeline's path (``cli_default``), to its params key (``param``,
    resolved by :func:`paths_from_args`) or to None (not written / not read). ``required``
    names options that must be given; ``into`` puts an option into another container (a
    mutually exclusive group) than ``parser``.
    """
    req, into = set(required), into or {}
    for s in stage.cmd_slots():
        default = s.path if s.cli_default and s.key not in req else None
        note = f" (default: {s.path})" if default is not None and "default:" not in s.help else ""
        where = into.get(s.key, parser)
        if s.option is None:
            where.add_argument(
                s.key,
                nargs=None if s.key in req else "?",
                default=default,
                metavar=s.key.upper(),
                help=s.help + note,
            )
        else:
            where.add_argument(
                s.option, dest=s.key, default=default, required=s.key in req, help=s.help + note
            )


def paths_from_args(
    stage: Stage, args: argparse.Namespace, params: Params
) -> dict[str, PathLike | None]:
    """The stage's paths from parsed options; options bound to a params key fall back to it."""
    out: dict[str, PathLike | None] = {}
    for s in stage.slots:
        v = getattr(args, s.key, None)
        if v is None and s.param:
            v = param_value(params, s.param)
        out[s.key] = v
    return out


def run_from_args(
    stage: Stage, args: argparse.Namespace, params: Params, **extra: Any
) -> StageResult:
    """:meth:`Stage.run` on the paths of a parsed ``densemark <stage>`` command line."""
    return stage.run(params, paths_from_args(stage, args, params), **extra)
