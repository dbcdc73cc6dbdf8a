"""`featpipe merge`: shard stores of one extraction -> one store, rows in input order."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("merge", help="merge the shard stores of one extraction into one store")
    p.add_argument("shards", nargs="+", help="finished shard stores (extract --shard K/N)")
    p.add_argument("--out", required=True, help="merged .h5 store")
    p.add_argument("--copy", action="store_true",
                   help="copy the features into a self-contained file (default: HDF5 virtual "
                        "datasets reading the shards, which must stay next to it)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from featpipe.store.merge import merge_shards
    from featpipe.store.reader import FeatureStore

    out = merge_shards(args.shards, args.out, copy=args.copy, overwrite=args.overwrite)
    store = FeatureStore.open(out)
    layout = "copied" if args.copy else "virtual, reading the shards"
    print(f"wrote {out}: {len(store.ok_rows)} images from {len(args.shards)} shards, "
          f"{len(store.failures)} failed ({layout})")
    return 0
