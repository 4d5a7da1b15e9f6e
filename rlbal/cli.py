"""`rlbal` command line: train, eval, plot, assets.

    rlbal train recipes/quickstart.yaml run.max_steps=5
    rlbal train recipes/gdro.yaml --explain            # every key: the recipe's value, allowed values, documentation
    rlbal assets tiny --sft-steps 200                  # build the offline tiny model
    rlbal eval runs/quickstart                          # pass@k / mean@k of a run's newest checkpoint
    rlbal plot runs/a runs/b                            # diagnostic plots, several runs overlaid
    rlbal --version
    rlbal compare recipes/quickstart.yaml --methods grpo,gdro --seeds 1,2,3   # GDRO vs GRPO, seeds, CIs

Heavy libraries are imported inside each command, so errors in a recipe are reported in about a second.
Bad input (recipe, data, model, reward, checkpoint) is one line `rlbal: <kind> error: ...` naming the culprit
and exit status 2 (rlbal.errors); add --debug anywhere (or set RLBAL_DEBUG=1) to see the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from rlbal.errors import guarded


def _train_parser(prog: str = "rlbal train") -> argparse.ArgumentParser:
    from rlbal.errors import ArgumentParser

    p = ArgumentParser(
        prog=prog,
        description="Train with a recipe: defaults <- RECIPE (YAML) <- key.sub=value overrides.",
        epilog="Example: rlbal train recipes/gdro.yaml run.max_steps=50 controllers.prompt_gdro.eta=1.0",
    )
    p.add_argument("recipe", nargs="?", help="YAML recipe (omit to use the defaults)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. algo.clip_high=0.28 run.seed=1")
    p.add_argument(
        "--explain",
        action="store_true",
        help="print every config key with its value (the recipe's and overrides', else the default), its "
        "allowed values and its documentation, then exit",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="show third-party logs in full (vLLM INFO, weight reloads, warnings); = logging.verbose=true",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the config, reward, model folder, data files and resume checkpoint, print the "
        "resolved config, then exit",
    )
    p.add_argument("--debug", action="store_true", help="on an error, show the traceback instead of one line")
    return p


def train_main(argv: Sequence[str] | None = None, prog: str = "rlbal train") -> int:
    args = _train_parser(prog).parse_args(argv)
    from rlbal.runtime_env import apply_env

    apply_env()  # offline hub, caches, OpenMP policy: before torch / transformers load (rlbal.runtime_env)
    from rlbal.config import explain, load_config

    recipe = args.recipe
    overrides = list(args.overrides)
    if recipe is not None and "=" in recipe:  # no recipe, only overrides
        overrides.insert(0, recipe)
        recipe = None
    if args.verbose:
        overrides.append("logging.verbose=true")
    if args.explain:
        cfg = load_config(recipe, overrides) if recipe is not None or overrides else None
        given = "the recipe and overrides" if cfg is not None else "the defaults"
        try:
            print(
                f"# every config key = its value ({given}); [allowed values]; (default d) where changed; "
                "# documentation"
            )
            print("\n".join(explain(cfg)), flush=True)
        except BrokenPipeError:  # `--explain | head`: the reader stopped early
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if not args.dry_run:
        from rlbal.console import quiet_third_party, verbose_requested

        quiet_third_party(verbose_requested(recipe, overrides))  # before validation imports torch
    cfg = load_config(recipe, overrides)
    if args.dry_run:
        import yaml

        from rlbal.preflight import check_run

        check_run(cfg, build_assets=False)
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return 0
    from rlbal.run import run_training

    run_training(cfg, recipe=recipe)
    return 0


def _assets_main(argv: Sequence[str]) -> int:
    from rlbal.errors import ArgumentParser

    p = ArgumentParser(prog="rlbal assets", description="Build offline model assets (cached; built once).")
    p.add_argument(
        "what",
        choices=["tiny", "tiny-qwen2", "tiny-sft", "smollm2-135m", "where"],
        help="asset to build, or 'where' to print the cache folder",
    )
    p.add_argument("--sft-steps", type=int, default=None, help="tiny models: SFT warm-start steps")
    args = p.parse_args(argv)
    from rlbal import assets
    from rlbal.errors import UserError

    if args.sft_steps is not None and (args.sft_steps < 0 or not args.what.startswith("tiny")):
        raise UserError(
            f"--sft-steps must be >= 0 and applies to the tiny models only (got {args.sft_steps} for {args.what!r})"
        )
    if args.what == "where":
        print(assets.asset_cache_dir())
        return 0
    print(
        assets.resolve_model(args.what)
        if args.sft_steps is None
        else assets.tiny_model(variant="qwen2" if args.what == "tiny-qwen2" else "llama", sft_steps=args.sft_steps)
    )
    return 0


def _eval_main(argv: Sequence[str]) -> int:
    from rlbal.console import quiet_third_party

    quiet_third_party("--verbose" in argv)  # before the engine's libraries are imported
    from rlbal.eval_cli import eval_main

    return eval_main(argv)


def _compare_main(argv: Sequence[str]) -> int:
    from rlbal.compare import compare_main

    return compare_main(argv)


def _plot_main(argv: Sequence[str]) -> int:
    from rlbal.plot import plot_main

    return plot_main(argv)


COMMANDS = {
    "train": lambda argv: train_main(argv),
    "assets": _assets_main,
    "eval": _eval_main,
    "plot": _plot_main,
    "compare": _compare_main,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--debug"]:  # `rlbal --debug train ...`: the command's own handler takes it from anywhere
        argv = [*argv[1:], "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print(f"\ncommands: {', '.join(COMMANDS)}   (rlbal COMMAND --help for each)")
        return 0
    if argv[0] in ("-V", "--version"):
        from rlbal.versions import rlbal_version

        print(f"rlbal {rlbal_version()}")
        return 0
    if argv[0] not in COMMANDS:
        print(f"rlbal: unknown command {argv[0]!r}; commands: {', '.join(COMMANDS)} (rlbal --help)", file=sys.stderr)
        return 2
    from rlbal.runtime_env import apply_env

    apply_env()  # eval and assets load models too: same offline hub and caches as train (rlbal.runtime_env)
    return guarded(COMMANDS[argv[0]], argv[1:])


if __name__ == "__main__":
    sys.exit(main())
