"""`featpipe finetune`: fine-tune a backbone with a new head on labelled images, into RUN_DIR."""

from __future__ import annotations

import sys

from featpipe.cli.curriculum_options import add_curriculum_options, curriculum_spec
from featpipe.cli.output import add_resize_options, add_source_options


def add_parser(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune a backbone with a new head (resumable)")
    p.add_argument("source", help="labelled images: class-per-folder directory, manifest, IDX")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory")
    p.add_argument("--model", default=None, help="backbone (default: efficientnet_lite0)")
    p.add_argument("--weights", default=None, help="local state_dict / safetensors file")
    p.add_argument("--no-pretrained", action="store_true", help="random init (no download)")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--resize", default="pad", choices=["pad", "crop", "squash"],
                   help="how an image becomes the square input (as for extract)")
    add_resize_options(p)
    p.add_argument("--freeze", default="none", metavar="none|all|N",
                   help="freeze no stage, every stage (head only) or the first N stages of "
                        "the 'stages' list of `featpipe layers`")
    p.add_argument("--freeze-until", default=None, metavar="LAYER",
                   help="freeze every module up to and including this layer")
    p.add_argument("--unfreeze-schedule", type=int, default=None, metavar="K",
                   help="gradual unfreezing: one more stage (top first) every K epochs")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    p.add_argument("--lr", type=float, default=1e-3, help="backbone learning rate (top stage)")
    p.add_argument("--head-lr", type=float, default=None, help="head learning rate (default: --lr)")
    p.add_argument("--layer-decay", type=float, default=None, metavar="F",
                   help="each stage down gets F times the rate of the one above")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--head-init", default="random", choices=["probe", "random"],
                   help="probe: start the head from featpipe's linear probe (LP-FT)")
    p.add_argument("--features", default=None, metavar="STORE.h5",
                   help="feature store for --head-init probe (used if its provenance matches)")
    p.add_argument("--augment", default="standard", choices=["standard", "none"])
    p.add_argument("--val-split", default="0.1", metavar="FRACTION|SPLIT",
                   help="stratified fraction per class, or a split name of the manifest")
    p.add_argument("--patience", type=int, default=5,
                   help="early stopping after this many epochs without improvement (0: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "none"],
                   help="autocast on CUDA (CPU always runs float32)")
    p.add_argument("--no-channels-last", action="store_true", help="(CUDA only)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--workers", type=int, default=None, help="decoding processes")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_curriculum_options(p)
    add_source_options(p)
    p.set_defaults(func=run)


def finetune_spec(args):
    """The typed :class:`~featpipe.finetuning.spec.FinetuneSpec` of the command's options."""
    from featpipe.cli.parsing import parse_color
    from featpipe.finetuning.spec import FinetuneSpec
    from featpipe.spec import DEFAULT_BACKBONE

    return FinetuneSpec(
        model=args.model or DEFAULT_BACKBONE, weights=args.weights,
        pretrained=not args.no_pretrained, image_size=args.image_size, resize=args.resize,
        crop_pct=args.crop_pct, pad_color=parse_color(args.pad_color),
        freeze=_freeze(args.freeze), freeze_until=args.freeze_until,
        unfreeze_every=args.unfreeze_schedule, epochs=args.epochs, batch_size=args.batch_size,
        optimizer=args.optimizer, lr=args.lr, head_lr=args.head_lr,
        layer_decay=args.layer_decay, weight_decay=args.weight_decay, momentum=args.momentum,
        warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing,
        head_init=args.head_init, augment=args.augment, val_split=_fraction_or_name(
            args.val_split), patience=args.patience or None, seed=args.seed, amp=args.amp,
        channels_last=not args.no_channels_last)


def _freeze(text: str):
    return int(text) if text.strip().isdigit() else text.strip()


def _fraction_or_name(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def run(args) -> int:
    from functools import partial

    from featpipe.finetuning.run import finetune
    from featpipe.workflows.curriculum import finetune_with_curriculum

    spec = finetune_spec(args)
    curriculum = curriculum_spec(args, spec)
    run_it = finetune if curriculum is None else partial(finetune_with_curriculum,
                                                         curriculum=curriculum)
    outcome = run_it(args.source, args.out, spec, features=args.features,
                     overwrite=args.overwrite, device=args.device, workers=args.workers,
                     progress=not args.quiet, log=lambda line: print(line, file=sys.stderr),
                     follow_links=args.follow_links, allow_outside=args.allow_outside)
    print(outcome.summary_line())
    return 0
