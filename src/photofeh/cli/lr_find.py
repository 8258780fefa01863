"""``photofeh lr-find``: the learning-rate range test, to choose a config's ``max_lr``."""

from __future__ import annotations

import argparse

from photofeh.cli.common import OVERWRITE_HELP, check_output, load_table, train_config


def handle(args: argparse.Namespace) -> int:
    """Run the range test (photofeh.model), draw its curve (photofeh.report) and print the suggested max_lr (the
    plot shows why)."""
    from photofeh.model.train import lr_find
    from photofeh.report.run_figures import lr_range_figure

    cfg = train_config(args)
    check_output(args.out, [args.table, args.config], args.overwrite)
    found = lr_find(load_table(args.table, cfg.table_preset), cfg)
    lr_range_figure(found.lrs, found.losses, found.suggestion, args.out)
    print(f"suggested max_lr = {found.suggestion:.3g} (plot: {args.out})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """lr-find's arguments: the table and config of the training it prepares."""
    lf = sub.add_parser("lr-find", help="learning-rate range test; saves its plot",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    lf.add_argument("table", help="labelled catalogue")
    lf.add_argument("--config", help="TOML configuration")
    lf.add_argument("--out", default="lr_finder.png", help="plot file")
    lf.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    lf.set_defaults(func=handle)
