"""``photofeh train``: train a network on a labelled catalogue into a run directory."""

from __future__ import annotations

import argparse
import sys

from photofeh.cli.arguments import bounded_int, positive_int
from photofeh.cli.common import check_output, load_table, train_config, user_errors
from photofeh.model.prior import PRIOR_KINDS, SELECTION_WEIGHTINGS


def handle(args: argparse.Namespace) -> int:
    """Train into ``--out`` (replaced only once the new run is complete with ``--overwrite``), the training
    curves drawn into the run (photofeh.report) before it is put in place."""
    from photofeh.io.locking import OutputLocked
    from photofeh.model.train import train
    from photofeh.report.run_figures import history_figure
    from photofeh.simulate.cache import cached_mock

    cfg = train_config(args)
    check_output(args.out, [args.table, args.config], overwrite=True)  # train refuses an existing run itself
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr))
    table = load_table(args.table, cfg.table_preset, log)
    with user_errors(KeyError, ValueError, OSError, OutputLocked):
        model_dir = train(table, cfg, args.out, log=log, overwrite=args.overwrite, draw_history=history_figure,
                          inputs=(args.table, args.config), mock_source=cached_mock)
    print(f"model written to {model_dir}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """train's arguments: a TOML config with a few overrides, so that a run is reproducible from its files."""
    tr = sub.add_parser("train", help="train a network on a labelled catalogue",
                        description="Train the model described by a TOML config (default: configs/default.toml "
                                    "settings) on a labelled catalogue; write a run directory.",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    tr.add_argument("table", help="labelled catalogue (.parquet or .fits), e.g. from 'simulate --spec-only'")
    tr.add_argument("--config", help="TOML configuration ([data], [model], [train] sections)")
    tr.add_argument("--out", required=True, help="run directory to create")
    tr.add_argument("--epochs", type=positive_int, help="override the number of epochs")
    tr.add_argument("--ensemble", type=positive_int, help="override the number of ensemble members")
    tr.add_argument("--seed", type=bounded_int(0, 2**63 - 1), help="override the seed")
    tr.add_argument("--prior", choices=PRIOR_KINDS,
                    help="override the prior: labels (best per-star estimate), flat (small bias at every [Fe/H], "
                         "for metallicity distributions and maps; docs/populations.md) or likelihood (both from "
                         "one model: feh per star and feh_population)")
    tr.add_argument("--baseline-rounds", type=bounded_int(0, 100_000),
                    help="override the LightGBM rounds of the baselines fitted beside the network (0: none)")
    tr.add_argument("--split-seed", type=bounded_int(0, 2**63 - 1), metavar="N",
                    help="override split_seed: choose the test stars by a hash of their source_id seeded with N, "
                         "whatever the row order (20201125 with a test fraction of 0.30: the benchmarks' split "
                         "of the green2020 sample; docs/config.md)")
    tr.add_argument("--selection-column", metavar="COLUMN",
                    help="override selection_column: the labelled stars' targeting probability (e.g. the mock's "
                         "spec_target_probability), which weights the calibration stars of mdf and map by 1/p "
                         "(docs/populations.md)")
    tr.add_argument("--selection-weighting", choices=SELECTION_WEIGHTINGS,
                    help="override selection_weighting: loss weights each labelled star's training loss by "
                         "1/p as well (Horvitz-Thompson; needs --selection-column): it moves the estimates toward "
                         "the survey's population where the targeting used more than the model's inputs, and "
                         "costs scatter (docs/models.md)")
    tr.add_argument("--overwrite", action="store_true",
                    help="replace an existing run directory (only once the new run is complete)")
    tr.add_argument("--quiet", action="store_true", help="no per-epoch log")
    tr.set_defaults(func=handle)
