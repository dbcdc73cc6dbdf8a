"""`featpipe extract`: images -> pooled multi-layer features in an HDF5 store."""

from __future__ import annotations

from featpipe.cli.output import add_resize_options, add_source_options
from featpipe.cli.parsing import batch_size_option, parse_color, parse_layers, parse_shard


def add_parser(sub) -> None:
    p = sub.add_parser("extract", help="extract pooled multi-layer features into an HDF5 store")
    p.add_argument("source", help="class-per-folder directory, CSV manifest, file list, IDX "
                                  "file or .tar shards ('shards-{000..009}.tar')")
    p.add_argument("--out", required=True, help="output .h5 store")
    p.add_argument("--model", default=None, help="backbone (default: efficientnet_lite0)")
    p.add_argument("--weights", default=None, help="local state_dict / safetensors file")
    p.add_argument("--no-pretrained", action="store_true", help="random init (no download)")
    p.add_argument("--layers", default="full", help="last | stages | full | comma-separated nodes")
    p.add_argument("--pool", default="mean", help="mean | max | meanmax | none")
    p.add_argument("--token-pool", default="cls", choices=["cls", "mean"], help="ViT token pooling")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--resize", default=None, choices=["pad", "crop", "squash"],
                   help="pad: keep the whole image, pad to a square (default); crop: shorter "
                        "side to image-size/crop-pct, centre crop; squash: ignore the aspect")
    add_resize_options(p)
    p.add_argument("--max-pixels", type=int, default=None,
                   help="larger images (width x height) fail as decompression bombs "
                        "(default 200000000)")
    p.add_argument("--batch-size", type=batch_size_option, default=32,
                   help="images per forward pass, or auto: the largest that fits the GPU "
                        "(probed; recorded in the store; 32 on a CPU)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: auto)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", default="float32", help="stored dtype: float32 | float16")
    p.add_argument("--amp", default=None, help="bf16 | fp16 autocast (CUDA or CPU)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--decode", default="auto", choices=["auto", "cpu", "gpu"],
                   help="where JPEGs are decoded and resized: gpu (batched nvJPEG, other "
                        "files on the CPU), cpu (decode workers); auto: gpu on a CUDA device")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the capture (static shapes; the first batch compiles)")
    p.add_argument("--compression", default=None, help="lzf | gzip")
    p.add_argument("--shard", default=None, help="K/N: extract the K-th of N slices of the inputs")
    p.add_argument("--dask", default=None, metavar="ADDRESS|local:N",
                   help="extract shards on a Dask cluster (scheduler address, or local:N worker "
                        "processes), then merge them into --out")
    p.add_argument("--shards", type=int, default=None,
                   help="with --dask: shards to cut the input into (default: 2 per worker)")
    p.add_argument("--copy", action="store_true",
                   help="with --dask: merge into a self-contained file (default: virtual "
                        "datasets over OUT.shards/)")
    p.add_argument("--force", action="store_true", help="allow --pool none above the size cap")
    add_source_options(p)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.dask:
        return _run_on_dask(args)
    from featpipe.extract import extract

    result = extract(args.source, args.out, spec_from_args(args), batch_size=args.batch_size,
                     workers=args.workers, device=args.device, shard=parse_shard(args.shard),
                     overwrite=args.overwrite, progress=not args.quiet,
                     follow_links=args.follow_links, allow_outside=args.allow_outside)
    resumed = " (resumed)" if result.resumed else ""
    print(f"wrote {result.path}: {result.n_images} images, {result.n_failed} failed{resumed}, "
          f"{result.images_per_second:.1f} img/s")
    return 0


def _run_on_dask(args) -> int:
    from featpipe.scale.extract import check_options, extract_on_dask

    check_options(shard=args.shard, workers=args.workers, batch_size=args.batch_size)
    result = extract_on_dask(args.source, args.out, spec_from_args(args), dask=args.dask,
                             n_shards=args.shards, batch_size=args.batch_size,
                             device=args.device, copy=args.copy, overwrite=args.overwrite,
                             progress=not args.quiet, follow_links=args.follow_links,
                             allow_outside=args.allow_outside)
    print(f"wrote {result.path}: {result.n_images} images, {result.n_failed} failed, "
          f"{len(result.shards)} shards ({result.resumed_shards} resumed), "
          f"{result.images_per_second:.1f} img/s")
    return 0


def spec_from_args(args):
    """The :class:`~featpipe.spec.ExtractionSpec` that ``featpipe extract``'s options describe."""
    from featpipe.spec import DEFAULT_BACKBONE, ExtractionSpec

    return ExtractionSpec(
        model=args.model or DEFAULT_BACKBONE, weights=args.weights,
        pretrained=not args.no_pretrained, layers=_layers(args.layers), pool=args.pool,
        token_pool=args.token_pool, image_size=args.image_size, dtype=args.dtype,
        compression=args.compression, amp=args.amp, channels_last=args.channels_last,
        decode=args.decode, compile=args.compile, force=args.force, **_given(resize=args.resize, crop_pct=args.crop_pct,
                                   pad_color=parse_color(args.pad_color),
                                   max_pixels=args.max_pixels))


def _layers(text: str) -> str | tuple[str, ...]:
    """One preset or name as itself, several names as a tuple."""
    names = parse_layers(text)
    return names[0] if isinstance(names, list) and len(names) == 1 else tuple(names)


def _given(**options) -> dict:
    """The options the user set (the spec's defaults stand for the others)."""
    return {name: value for name, value in options.items() if value is not None}
