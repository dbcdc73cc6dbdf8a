"""`featpipe layers`: a backbone's capturable layers, their shapes and the presets."""

from __future__ import annotations

from featpipe.cli.output import print_json


def add_parser(sub) -> None:
    p = sub.add_parser("layers", help="list a backbone's capturable layers and presets")
    p.add_argument("model", nargs="?", default=None, help="backbone name (default: efficientnet_lite0)")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--weights", default=None, help="local state_dict / safetensors file")
    p.add_argument("--no-pretrained", action="store_true", help="random init (no download)")
    p.add_argument("--pool", default="mean", help="pooling used for the dims column")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from featpipe.models.layers import PRESETS, list_layers, resolve_layers
    from featpipe.models.registry import DEFAULT_BACKBONE, create_backbone

    backbone = create_backbone(args.model or DEFAULT_BACKBONE, weights=args.weights,
                               pretrained=not args.no_pretrained, image_size=args.image_size)
    infos = list_layers(backbone, image_size=args.image_size)
    dims = {info.name: info.pooled_dim(args.pool) for info in infos}
    presets = {name: resolve_layers(backbone, name) for name in PRESETS}
    if args.json:
        print_json({"model": backbone.name, "image_size": backbone.preprocessing.image_size,
                    "layers": [{"name": i.name, "shape": list(i.shape), "dim": dims[i.name]}
                               for i in infos],
                    "presets": presets})
        return 0
    print(f"{backbone.name} at {backbone.preprocessing.image_size} px "
          f"(pooled dims for --pool {args.pool})")
    width = max(len(info.name) for info in infos)
    for info in infos:
        tags = [name for name, members in presets.items() if info.name in members]
        shape = "x".join(map(str, info.shape))
        print(f"  {info.name:<{width}}  {shape:>14}  {dims[info.name]:>7}  {' '.join(tags)}")
    for name, members in presets.items():
        print(f"preset {name}: {len(members)} layers, {sum(dims[m] for m in members)} features")
    return 0
