"""`featpipe curriculum-scores`: how easy each image is for a curriculum, as CSV."""

from __future__ import annotations

from featpipe.cli.output import add_source_options


def add_parser(sub) -> None:
    p = sub.add_parser("curriculum-scores",
                       help="score images easy to hard for curriculum learning (CSV)")
    p.add_argument("source", help="class-per-folder directory, CSV manifest, file list or IDX")
    p.add_argument("--scoring", default="transfer",
                   help="transfer | self-taught | random | column:NAME (default: transfer)")
    p.add_argument("--out", required=True, help="CSV file to write (id,label,score,rank)")
    p.add_argument("--split", default=None, help="score only this split of the manifest")
    p.add_argument("--store", default=None,
                   help="transfer: a feature store of these images (default: extract)")
    p.add_argument("--model", default=None, help="transfer: backbone to extract with")
    p.add_argument("--weights", default=None, help="transfer: local state_dict file")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--layers", default=None,
                   help="transfer: layers (extracted: default last; stored: default all)")
    p.add_argument("--recipe", default="ridge",
                   help="transfer: the classical pipeline (default ridge; linear-probe gives "
                        "calibrated probabilities, ~10x slower)")
    p.add_argument("--cv", type=int, default=5, help="out-of-fold folds (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    add_source_options(p)
    p.set_defaults(func=run)


def scoring_spec(args):
    """The :class:`~featpipe.workflows.curriculum.ScoringSpec` of the options."""
    from featpipe.cli.extract import _layers
    from featpipe.spec import DEFAULT_BACKBONE, ExtractionSpec
    from featpipe.workflows.curriculum import ScoringSpec

    extraction = ExtractionSpec(model=args.model or DEFAULT_BACKBONE, weights=args.weights,
                                image_size=args.image_size,
                                layers=_layers(args.layers) if args.layers else "last")
    return ScoringSpec(scoring=args.scoring, store=args.store, extraction=extraction,
                       layers=args.layers if args.store else None, recipe=args.recipe,
                       cv=args.cv, seed=args.seed, batch_size=args.batch_size,
                       device=args.device)


def run(args) -> int:
    from featpipe.fileio import checked_output
    from featpipe.workflows.curriculum import curriculum_scores, write_scores

    checked_output(args.out)  # before the work, not after it
    table = curriculum_scores(args.source, scoring_spec(args), split=args.split,
                              follow_links=args.follow_links, allow_outside=args.allow_outside)
    path = write_scores(args.out, table)
    print(f"wrote {path}: {len(table.ids)} images scored by {table.scoring} "
          f"(mean {table.scores.mean():.3f}, min {table.scores.min():.3f}, "
          f"max {table.scores.max():.3f})")
    return 0
