"""Subcommands ``densemark train | export | model-info | predict``."""

from __future__ import annotations

import argparse
import json
import sys

from densemark.config import load_params
from densemark.pipeline import STAGES, add_path_options, run_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train the landmark regressor on a shard dataset (params section train)"
    )
    add_path_options(p, STAGES["train"])
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.set_defaults(func=_train)

    p = sub.add_parser("export", help="export a checkpoint to ONNX, checked against PyTorch")
    add_path_options(p, STAGES["export"])
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "model-info",
        help="params, MACs and batch-1 CPU latency (PyTorch, ONNX Runtime; one thread)",
        description="Latency is timed interleaved with 3DDFA_V2's MobileNet x0.5 @120 (the baseline), "
        "repeated until the medians settle; median and p90 in ms.",
    )
    p.add_argument(
        "--checkpoint", default=None, help="a trained model (default: the configured architecture)"
    )
    p.add_argument(
        "--backbone", default=None, help="override the configured backbone (without --checkpoint)"
    )
    p.add_argument(
        "--width",
        type=float,
        default=None,
        help="override the configured width multiplier (without --checkpoint)",
    )
    p.add_argument("--n-points", type=int, default=520, help="landmark count without --checkpoint")
    p.add_argument(
        "--input-size", type=int, default=None, help="override the configured input size"
    )
    p.add_argument(
        "--repeats", type=int, default=200, help="at least this many timed calls per variant"
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=60.0,
        help="stop timing after this long even if not settled",
    )
    p.add_argument("--no-baseline", action="store_true", help="do not time the 3DDFA_V2 baseline")
    p.add_argument("--json", default=None, help="also write the numbers here")
    p.set_defaults(func=_model_info)

    p = sub.add_parser("predict", help="detect faces and predict dense landmarks on photos")
    p.add_argument("images", nargs="+")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="model.pt / checkpoint.pt (PyTorch) or model.onnx (ONNX Runtime, no torch)",
    )
    p.add_argument(
        "--out", required=True, help="folder for <stem>.json, <stem>.npy, <stem>_overlay.png"
    )
    p.add_argument(
        "--all-faces",
        action="store_true",
        help="every detected face (NPY (F, K, 3)), not only the best one",
    )
    boxes = p.add_mutually_exclusive_group()
    boxes.add_argument(
        "--box",
        default=None,
        metavar="X0,Y0,X1,Y1",
        help="the face's box in image pixels (brows to chin, ear to ear: the 68 keypoints' box), for every image",
    )
    boxes.add_argument(
        "--boxes",
        default=None,
        metavar="FILE",
        help="boxes of many images: JSON {name: [x0, y0, x1, y1]} or CSV image,x0,y0,x1,y1 (name: path, file name or stem)",
    )
    p.add_argument(
        "--detector",
        default="auto",
        choices=("auto", "haar", "haar-frontal", "dlib"),
        help="face detector when no box is given (auto: Haar cascades + dlib HOG, on the image and its mirror)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=100_000_000,
        help="refuse images whose header claims more pixels",
    )
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_predict)


def _train(args: argparse.Namespace) -> int:
    res = run_from_args(STAGES["train"], args, load_params(args.params), resume=args.resume)
    print(json.dumps(res.metrics, sort_keys=True))
    return 0


def _export(args: argparse.Namespace) -> int:
    res = run_from_args(STAGES["export"], args, load_params(args.params))
    rep = res.report_dict()
    print(
        f"{args.out}: {rep['bytes']} bytes, ONNX Runtime vs PyTorch max abs diff {rep['max_abs_diff']:.2e}"
    )
    return 0


def _model_info(args: argparse.Namespace) -> int:
    from densemark.core.atomic import write_json
    from densemark.core.errors import ConfigError
    from densemark.train.export import load_model, model_info
    from densemark.train.models import create_model

    if args.checkpoint:
        if args.backbone or args.width:
            raise ConfigError(
                "--backbone/--width describe an untrained model; a --checkpoint has its own"
            )
        model, ck = load_model(args.checkpoint)
        cfg = ck["config"]
        size = args.input_size or int(cfg["input_size"])
    else:
        tp = load_params(args.params).train
        cfg = {
            "backbone": args.backbone or tp.backbone,
            "width": args.width or tp.width,
            "n_points": args.n_points,
        }
        size = args.input_size or tp.input_size
        model = create_model(cfg["backbone"], args.n_points, size, cfg["width"])
    info = {
        "backbone": cfg["backbone"],
        "width": cfg["width"],
        "n_points": cfg["n_points"],
        **model_info(
            model, size, args.repeats, baseline=not args.no_baseline, max_seconds=args.max_seconds
        ),
    }
    for k, v in info.items():
        print(
            f"{k:>22}: {v:.3f}"
            if isinstance(v, float)
            else f"{k:>22}: {v:,}"
            if isinstance(v, int) and not isinstance(v, bool)
            else f"{k:>22}: {v}"
        )
    if args.json:
        write_json(args.json, info)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from densemark.train.detect import parse_box, read_boxes_file
    from densemark.train.infer import load_any_predictor  # torch only for a .pt checkpoint
    from densemark.train.photos import predict_files

    box = parse_box(args.box, None, "--box") if args.box else None
    boxes = read_boxes_file(args.boxes) if args.boxes else None
    done, errors = predict_files(
        load_any_predictor(args.checkpoint, args.device),
        args.images,
        args.out,
        args.all_faces,
        boxes=boxes,
        box=box,
        detector=args.detector,
        max_pixels=args.max_pixels,
    )
    for d in done:
        print(f"{d['image']}: {d['faces']} face(s) ({d['box_source']}) -> {d['json']}")
    for e in errors:
        print(f"densemark: error: {e}", file=sys.stderr)
    return 1 if errors else 0
