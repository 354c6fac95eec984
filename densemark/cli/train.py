"""Subcommands ``densemark train | export | model-info | predict``."""

from __future__ import annotations

import argparse
import json
import sys

from densemark.config import load_params
from densemark.pipeline import STAGES, add_path_options, run_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the landmark regressor on a shard dataset (params section train)")
    add_path_options(p, STAGES["train"])
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.set_defaults(func=_train)

    p = sub.add_parser("export", help="export a checkpoint to ONNX, checked against PyTorch")
    add_path_options(p, STAGES["export"])
    p.set_defaults(func=_export)

    p = sub.add_parser("model-info", help="params, MACs and batch-1 CPU latency (PyTorch, ONNX Runtime; one thread)")
    p.add_argument("--checkpoint", default=None, help="a trained model (default: the configured architecture)")
    p.add_argument("--n-points", type=int, default=520, help="landmark count without --checkpoint")
    p.add_argument("--input-size", type=int, default=None, help="override the configured input size")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--json", default=None, help="also write the numbers here")
    p.set_defaults(func=_model_info)

    p = sub.add_parser("predict", help="detect faces and predict dense landmarks on photos")
    p.add_argument("images", nargs="+")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="folder for <stem>.json, <stem>.npy, <stem>_overlay.png")
    p.add_argument("--all-faces", action="store_true", help="every detected face (NPY (F, K, 3)), not only the largest")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_predict)


def _train(args: argparse.Namespace) -> int:
    res = run_from_args(STAGES["train"], args, load_params(args.params), resume=args.resume)
    print(json.dumps(res.metrics, sort_keys=True))
    return 0


def _export(args: argparse.Namespace) -> int:
    res = run_from_args(STAGES["export"], args, load_params(args.params))
    rep = res.report_dict()
    print(f"{args.out}: {rep['bytes']} bytes, ONNX Runtime vs PyTorch max abs diff {rep['max_abs_diff']:.2e}")
    return 0


def _model_info(args: argparse.Namespace) -> int:
    from densemark.core.atomic import write_json
    from densemark.train.export import load_model, model_info
    from densemark.train.models import create_model

    if args.checkpoint:
        model, ck = load_model(args.checkpoint)
        cfg = ck["config"]
    else:
        tp = load_params(args.params).train
        cfg = {"backbone": tp.backbone, "width": tp.width, "input_size": tp.input_size, "n_points": args.n_points}
        model = create_model(tp.backbone, args.n_points, tp.input_size, tp.width)
    size = args.input_size or int(cfg["input_size"])
    info = {"backbone": cfg["backbone"], "width": cfg["width"], "n_points": cfg["n_points"], **model_info(model, size, args.repeats)}
    for k, v in info.items():
        print(f"{k:>10}: {v:.3f}" if isinstance(v, float) else f"{k:>10}: {v:,}" if isinstance(v, int) else f"{k:>10}: {v}")
    if args.json:
        write_json(args.json, info)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from densemark.train.predict import load_predictor, predict_files

    done, errors = predict_files(load_predictor(args.checkpoint, args.device), args.images, args.out, args.all_faces)
    for d in done:
        print(f"{d['image']}: {d['faces']} face(s) -> {d['json']}")
    for e in errors:
        print(f"densemark: error: {e}", file=sys.stderr)
    return 1 if errors else 0
