"""docs/real_data.md's commands on the real samples run as written, with every warning an error.

The fenced ``bash`` block of the section 'The real samples, command by command' is cut into commands
(continuation lines joined, comments dropped) and each ``photofeh`` line runs in-process through the command
line's ``main``, in a folder laid out as the repository root is: ``configs/`` the repository's, and
``../shared/data/real`` the shared samples found by ``real_sample``. Then a few checks that the runs did what
the text says: the benchmarks' test split, the preset's source_id in the predictions, each sample's model.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import GREEN2020, KEPLER_GIANTS, SEGUE_DR17, real_sample

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## The real samples, command by command"


def doc_commands(text: str, section: str = SECTION) -> list[list[str]]:
    """The commands of the ``bash`` blocks of one section of a Markdown file, as argument lists."""
    start = text.index(section)
    end = text.find("\n## ", start + len(section))
    body = text[start:end if end >= 0 else len(text)]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", body, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
            if line:
                commands.append(shlex.split(line))
    return commands


def test_the_section_lists_every_labelled_sample_with_its_config():
    commands = doc_commands((ROOT / "docs" / "real_data.md").read_text())
    assert all(c[0] == "photofeh" for c in commands)
    trained = {c[2]: c[c.index("--config") + 1] for c in commands if c[1] == "train"}
    assert trained == {f"../shared/data/real/{GREEN2020}": "configs/green2020.toml",
                       f"../shared/data/real/{SEGUE_DR17}": "configs/segue.toml",
                       f"../shared/data/real/{KEPLER_GIANTS}": "configs/kepler.toml"}
    assert [c[1] for c in commands].count("evaluate") == 3 and {"predict", "mdf"} <= {c[1] for c in commands}


@pytest.mark.slow  # the document's eight commands, three trainings: run by CI (make test-all), not make test
@pytest.mark.filterwarnings("error")
def test_real_data_commands_run_as_written(tmp_path, monkeypatch, capsys):
    from photofeh.cli import main

    samples = {name: real_sample(name) for name in (GREEN2020, SEGUE_DR17, KEPLER_GIANTS)}
    real = tmp_path / "shared" / "data" / "real"
    real.mkdir(parents=True)
    for name, path in samples.items():
        (real / name).symlink_to(path)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "configs").symlink_to(ROOT / "configs")
    monkeypatch.chdir(repo)
    t0 = time.perf_counter()
    for command in doc_commands((ROOT / "docs" / "real_data.md").read_text()):
        t1 = time.perf_counter()
        code = main(command[1:])
        assert code == 0, (command, capsys.readouterr().err[-3000:])
        print(f"{time.perf_counter() - t1:6.1f} s  {' '.join(command[:3])}")
    seconds = time.perf_counter() - t0
    print(f"docs/real_data.md's real-sample commands: {seconds:.1f} s")

    from photofeh.io.real_samples import green2020_test_mask, read_green2020

    # the benchmarks' split: the 30% test stars of green2020_test_mask, the rest 80/20 as bench_green2020 draws it
    from photofeh.model.train import split_indices

    stars = read_green2020(samples[GREEN2020])
    split = pd.read_parquet(repo / "green2020_run" / "split.parquet").set_index("source_id")["split"]
    test = green2020_test_mask(stars["source_id"].to_numpy())
    assert (split.loc[stars["source_id"]].to_numpy() == "test").tolist() == test.tolist()
    fit_ids = stars["source_id"].to_numpy()[~test]
    bench = split_indices(len(fit_ids), (0.8, 0.2, 0.0), 0, fit_ids)
    np.testing.assert_array_equal(split.loc[fit_ids].to_numpy(), np.array(["train", "validation", "unused"])[bench])
    metrics = json.loads((repo / "green2020_run" / "test_metrics.json").read_text())
    assert metrics["n_usable"] >= 0.99 * test.sum()
    # predictions carry the preset's source_id and the kept labels; mdf ran on them
    pred = pd.read_parquet(repo / "green2020_pred")
    assert list(pred.columns[:3]) == ["source_id", "feh_spec", "label_source"]
    assert set(pred["source_id"]) == set(stars["source_id"]) and pred["usable"].mean() > 0.99
    assert json.loads((repo / "green2020_mdf" / "mdf.json").read_text())["counts"]["selected"] > 9000
    # the SEGUE model learned [Fe/H] from the colour columns alone; Kepler's the three labels
    segue = json.loads((repo / "segue_run" / "model" / "model.json").read_text())
    assert segue["features"] == ["sdss_u-sdss_g", "sdss_g-sdss_r", "sdss_r-sdss_i", "sdss_i-sdss_z"]
    for run, labels in (("segue_run", ["feh"]), ("kepler_run", ["feh", "logg", "teff"])):
        report = json.loads((repo / run / "test_metrics.json").read_text())
        assert sorted(report["labels"]) == sorted(labels) and report["n_usable"] > 200
