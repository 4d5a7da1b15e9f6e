"""`rlbal` command line: train, eval, plot, assets.

    rlbal train recipes/quickstart.yaml run.max_steps=5
    rlbal train recipes/gdro.yaml --explain            # every knob with its default and documentation
    rlbal assets tiny --sft-steps 200                  # build the offline tiny model
    rlbal eval runs/quickstart                          # pass@k / mean@k of a run's newest checkpoint
    rlbal plot runs/a runs/b                            # diagnostic plots, several runs overlaid

Heavy libraries are imported inside each command, so errors in a recipe are reported in about a second.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence


def _train_parser(prog: str = "rlbal train") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Train with a recipe: defaults <- RECIPE (YAML) <- key.sub=value overrides.",
        epilog="Example: rlbal train recipes/gdro.yaml run.max_steps=50 controllers.prompt_gdro.eta=1.0",
    )
    p.add_argument("recipe", nargs="?", help="YAML recipe (omit to use the defaults)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. algo.clip_high=0.28 run.seed=1")
    p.add_argument("--explain", action="store_true", help="print every config key with default and doc, then exit")
    p.add_argument("--dry-run", action="store_true", help="validate and print the resolved config, then exit")
    return p


def train_main(argv: Sequence[str] | None = None, prog: str = "rlbal train") -> int:
    args = _train_parser(prog).parse_args(argv)
    from rlbal.config import ConfigError, explain, load_config

    if args.explain:
        print("\n".join(explain()))
        return 0
    recipe = args.recipe
    overrides = list(args.overrides)
    if recipe is not None and "=" in recipe:  # no recipe, only overrides
        overrides.insert(0, recipe)
        recipe = None
    try:
        cfg = load_config(recipe, overrides)
    except ConfigError as err:
        print(f"rlbal: config error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        import yaml

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return 0
    from rlbal.run import run_training

    run_training(cfg)
    return 0


def _assets_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="rlbal assets", description="Build offline model assets (cached; built once).")
    p.add_argument("what", choices=["tiny", "tiny-qwen2", "tiny-sft", "smollm2-135m", "where"],
                   help="asset to build, or 'where' to print the cache folder")
    p.add_argument("--sft-steps", type=int, default=None, help="tiny models: SFT warm-start steps")
    args = p.parse_args(argv)
    from rlbal import assets

    if args.what == "where":
        print(assets.asset_cache_dir())
        return 0
    print(assets.resolve_model(args.what) if args.sft_steps is None else assets.tiny_model(
        variant="qwen2" if args.what == "tiny-qwen2" else "llama", sft_steps=args.sft_steps))
    return 0


def _eval_main(argv: Sequence[str]) -> int:
    from rlbal.evaluate import eval_main

    return eval_main(argv)


def _plot_main(argv: Sequence[str]) -> int:
    from rlbal.plot import plot_main

    return plot_main(argv)


COMMANDS = {
    "train": lambda argv: train_main(argv),
    "assets": _assets_main,
    "eval": _eval_main,
    "plot": _plot_main,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip())
        print(f"\ncommands: {', '.join(COMMANDS)}   (rlbal COMMAND --help for each)")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
