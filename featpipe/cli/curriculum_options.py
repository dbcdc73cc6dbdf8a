"""The curriculum options of `featpipe finetune` (``--curriculum transfer --pacing exponential
--start 0.2 --inc 1.9 --step-length 50 [--order anti]``) and the typed spec they describe."""

from __future__ import annotations

#: Defaults of the pacing parameters (Hacohen & Weinshall's exponential pacing), used when the
#: chosen pacing function takes the parameter and the command line does not give it.
PACING_DEFAULTS = {"start": 0.2, "inc": 1.9, "step_length": 50}


def add_curriculum_options(p) -> None:
    group = p.add_argument_group("curriculum learning (featpipe.curriculum)")
    group.add_argument("--curriculum", default=None, metavar="SCORING",
                       help="train easy to hard: transfer | self-taught | random | column:NAME")
    group.add_argument("--pacing", default="exponential",
                       help="constant | linear | log | ladder | exponential (default)")
    group.add_argument("--start", type=float, default=None,
                       help="fraction of the data at the first step (default 0.2)")
    group.add_argument("--inc", type=float, default=None, help="exponential: factor (default 1.9)")
    group.add_argument("--step-length", type=int, default=None,
                       help="exponential, ladder: optimizer steps per step (default 50)")
    group.add_argument("--ramp", type=int, default=None,
                       help="linear, log: the step at which all of the data is in use")
    group.add_argument("--rungs", type=int, default=None, help="ladder: number of increases")
    group.add_argument("--order", default="curriculum", choices=["curriculum", "anti", "random"])
    group.add_argument("--no-balance", action="store_true",
                       help="prefixes need not keep each class's share")
    group.add_argument("--curriculum-store", default=None, metavar="STORE.h5",
                       help="transfer scoring: features of the images (default: extract)")
    group.add_argument("--curriculum-layers", default=None,
                       help="transfer scoring: stored layers (default: all)")
    group.add_argument("--curriculum-recipe", default="ridge",
                       help="transfer scoring: the classical pipeline (default ridge)")
    group.add_argument("--curriculum-cv", type=int, default=5, help="out-of-fold folds")
    group.add_argument("--self-taught-epochs", type=int, default=2)


def pacing_from_args(args):
    """The :class:`~featpipe.curriculum.pacing.Pacing` the options describe."""
    from featpipe.curriculum.pacing import PACING_FUNCTIONS, Pacing

    given = {name: getattr(args, name) for name in ("start", "inc", "step_length", "ramp",
                                                    "rungs") if getattr(args, name) is not None}
    takes = PACING_FUNCTIONS[args.pacing][1] if args.pacing in PACING_FUNCTIONS else ()
    defaults = {k: v for k, v in PACING_DEFAULTS.items() if k in takes}
    return Pacing(args.pacing, **{**defaults, **given})


def curriculum_spec(args, finetune_spec):
    """The :class:`~featpipe.workflows.curriculum.CurriculumSpec` of the options, or None."""
    if args.curriculum is None:
        return None
    from featpipe.spec import ExtractionSpec
    from featpipe.workflows.curriculum import CurriculumSpec, ScoringSpec

    extraction = ExtractionSpec(model=finetune_spec.model, weights=finetune_spec.weights,
                                pretrained=finetune_spec.pretrained,
                                image_size=finetune_spec.image_size, layers="last",
                                resize=finetune_spec.resize)
    scoring = ScoringSpec(scoring=args.curriculum, store=args.curriculum_store,
                          extraction=extraction, layers=args.curriculum_layers,
                          recipe=args.curriculum_recipe, cv=args.curriculum_cv,
                          seed=finetune_spec.seed, device=args.device)
    return CurriculumSpec(scoring, pacing_from_args(args), ordering=args.order,
                          balanced=not args.no_balance,
                          self_taught_epochs=args.self_taught_epochs)
