"""Error accumulation and loop closure in the report, from the cached per-view scores and TSED per-pair verdicts of
a run folder: figures, `accumulation.csv`, `accumulation_by_distance.csv` and `loop_closure.csv` match a direct
computation, `nvsc report` needs no torch for them, and a run without `tsed_pairs.csv` is reported with a note."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reports.error_accumulation import opening_and_closing, ring_distances
from scenes.errors import InvalidInputError
from tests.reports.run_factory import write_run

ROOT = Path(__file__).resolve().parents[2]
VIEWS = 8
#: (method, consistency PSNR, fidelity PSNR at the input's neighbours, dB lost per generation step)
METHODS = [("ground_truth", 30.0, None, 0.0), ("perturbed", 20.0, 18.0, 0.0), ("noise", 8.0, 6.0, 0.0),
           ("xunet/stochastic", 24.0, 22.0, 1.0), ("mvdiffusion/joint", 25.0, 21.0, 0.0)]
SCENES = ("mug-0", "chair-0")


def orbit(count: int) -> np.ndarray:
    """c2w [count, 4, 4] of cameras on a horizontal circle looking at the origin (OpenGL: looking along -z)."""
    c2w = np.tile(np.eye(4), (count, 1, 1))
    for i, angle in enumerate(np.linspace(0, 2 * np.pi, count, endpoint=False)):
        c, s = np.cos(angle), np.sin(angle)
        c2w[i, :3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
        c2w[i, :3, 3] = 2.5 * np.array([s, 0, c])
    return c2w


def fidelity(base: float, loss: float, view: int) -> float:
    """The fidelity PSNR written for a view: it drops by `loss` per generation step (view index, input at 0)."""
    return base - loss * (view - 1)


#: Held-out views of the NeRF score in the hand-built runs, and the consecutive pairs TSED scores.
HELDOUT = (2, 4, 6)
PAIRS = [(i, i + 1) for i in range(VIEWS - 1)]


def consistency(base: float, loss: float, view: int) -> float:
    """The NeRF consistency PSNR written for a held-out view: `loss` dB lower per view index."""
    return base - loss * view


def ring(view: int) -> int:
    """Views between `view` and the input view 0 along the 8-view ring, the shorter way round."""
    return min(view, VIEWS - view)


def tsed_verdict(loss: float, pair: tuple[int, int]) -> bool:
    """The TSED verdict written for a pair: a method that loses quality is consistent on its first 3 pairs only."""
    return loss == 0.0 or pair[0] < 3


def write_accumulation_run(root: Path) -> Path:
    rows = [(m, scene, "consistency_psnr", c, "") for m, c, _, _ in METHODS for scene in SCENES]
    rows += [(m, scene, "fidelity_psnr", f, "") for m, _, f, _ in METHODS if f is not None for scene in SCENES]
    write_run(root, pd.DataFrame(rows, columns=["method", "scene", "metric", "value", "missing"]), views=VIEWS)
    cameras = orbit(VIEWS).tolist()
    for folder in (root / "GenerateViews").iterdir():
        transforms = json.loads((folder / "transforms.json").read_text())
        for frame, matrix in zip(transforms["frames"], cameras):
            frame["transform_matrix"] = matrix
        (folder / "transforms.json").write_text(json.dumps(transforms))
    for folder in (root / "ScoreScene").iterdir():
        method = json.loads((folder / "provenance.json").read_text())["parameters"]["method"]
        _, _, base, loss = next(entry for entry in METHODS if entry[0] == method)
        views = [f"{i:06d}" for i in range(VIEWS)]
        per_view = [(views[i], "consistency", consistency(c, loss, i), 0.5) for i in HELDOUT
                    for _, c in [next((m, c) for m, c, _, _ in METHODS if m == method)]]
        if base is not None:
            per_view += [(name, "fidelity", fidelity(base, loss, i), 0.9 - 0.01 * i) for i, name in enumerate(views)
                         if i > 0]
        pd.DataFrame(per_view, columns=["view", "kind", "psnr", "ssim"]).assign(
            lpips=math.nan, method=method, scene=folder.name.split("-")[-2] + "-0").to_csv(folder / "per_view.csv",
                                                                                          index=False)
        # Pair distances by hand: the mean of the two views' ring distances and of their generation steps (the
        # input view 0 has none).
        pd.DataFrame({"method": method, "scene": folder.name.split("-")[-2] + "-0",
                      "first": [a for a, _ in PAIRS], "second": [b for _, b in PAIRS],
                      "index_distance": [(ring(a) + ring(b)) / 2 for a, b in PAIRS],
                      "angle_deg": [45.0 * (ring(a) + ring(b)) / 2 for a, b in PAIRS],
                      "step": [b if a == 0 else (a + b) / 2 for a, b in PAIRS],
                      "matches": [40 - 5 * a for a, _ in PAIRS], "median_sed": [0.5 * b for _, b in PAIRS],
                      "consistent": [tsed_verdict(loss, pair) for pair in PAIRS]}).to_csv(folder / "tsed_pairs.csv",
                                                                                         index=False)
    return root


def test_report_draws_accumulation_and_loop_closure_without_torch(tmp_path):
    write_accumulation_run(tmp_path / "runs")
    code = ("import sys; from pipeline.cli import main; rc = main(['report', 'runs', '--out', 'report', "
            "'--no-animations', '--bootstrap-resamples', '200']); "
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchmetrics', 'lpips')); "
            "assert not heavy, heavy; sys.exit(rc)")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    out = tmp_path / "report"

    curve = pd.read_csv(out / "accumulation.csv")
    psnr = curve[curve["metric"] == "fidelity_psnr"]
    assert set(psnr["method"]) == {m for m, _, f, _ in METHODS if f is not None}  # no fidelity for ground truth
    for method, _, base, loss in METHODS[1:]:
        rows = psnr[psnr["method"] == method].set_index("index_distance")
        # Reference: views at ring distance d from the input view 0 are d and 8 - d (one view at d = 4).
        for distance in (1, 2, 3, 4):
            views = {distance, VIEWS - distance} - {0}
            expected = np.mean([fidelity(base, loss, v) for v in views])
            assert rows.loc[distance, "mean"] == pytest.approx(expected)
            assert rows.loc[distance, "count"] == len(views) * len(SCENES)
    closure = pd.read_csv(out / "loop_closure.csv", dtype={"opening_at": str, "closing_at": str})
    stochastic = closure[(closure["method"] == "xunet/stochastic") & (closure["metric"] == "fidelity_psnr")]
    assert stochastic["opening_at"].tolist() == ["1", "1"] and stochastic["closing_at"].tolist() == ["7", "7"]
    assert stochastic["opening"].tolist() == [22.0, 22.0] and stochastic["closing"].tolist() == [16.0, 16.0]
    joint = closure[(closure["method"] == "mvdiffusion/joint") & (closure["metric"] == "fidelity_psnr")]
    assert (joint["opening"] == joint["closing"]).all()

    assert set(closure["metric"]) == {"fidelity_psnr", "fidelity_ssim"}  # the ring's ends: fidelity only

    # The NeRF score of held-out views 2, 4, 6 (ring distances 2, 4, 2), every method, the ground truth included.
    nerf = curve[curve["metric"] == "consistency_psnr"]
    assert set(nerf["method"]) == {m for m, *_ in METHODS}
    for method, c, _, loss in METHODS:
        rows = nerf[nerf["method"] == method].set_index("index_distance")
        assert rows["mean"].to_dict() == pytest.approx({2: np.mean([consistency(c, loss, v) for v in (2, 6)]),
                                                        4: consistency(c, loss, 4)})
    # TSED's verdicts, matches and median errors per pair, at the pair's mean ring distance.
    verdicts = curve[curve["metric"] == "tsed"]
    for method, _, _, loss in METHODS:
        rows = verdicts[verdicts["method"] == method].set_index("index_distance")
        for distance in (0.5, 1.5, 2.5, 3.5):
            at = [pair for pair in PAIRS if (ring(pair[0]) + ring(pair[1])) / 2 == distance]
            assert rows.loc[distance, "mean"] == pytest.approx(np.mean([tsed_verdict(loss, p) for p in at]))
            assert rows.loc[distance, "count"] == len(at) * len(SCENES)
    rows = pd.read_csv(out / "accumulation_rows.csv")  # each pair with its angle and generation step too
    pair = rows[(rows["metric"] == "tsed") & (rows["method"] == "noise") & (rows["first"] == 6)].iloc[0]
    assert (pair["angle_deg"], pair["step"]) == (45.0 * 1.5, 6.5)
    matches = curve[(curve["metric"] == "tsed_matches") & (curve["method"] == "noise")].set_index("index_distance")
    assert matches.loc[3.5, "mean"] == np.mean([40 - 5 * 3, 40 - 5 * 4])  # pairs (3, 4) and (4, 5)
    table = pd.read_csv(out / "accumulation_by_distance.csv", index_col=["metric", "method"])
    assert table.loc[("tsed", "xunet/stochastic"), "d=2.5"] == 0.5  # pairs (2, 3) consistent, (5, 6) not
    assert table.loc[("consistency_psnr", "mvdiffusion/joint"), "d=4"] == 25.0
    assert list(table.loc["tsed"].index) == [m for m, *_ in METHODS]  # the report's row order

    for name in ("accumulation_fidelity_psnr.png", "accumulation_fidelity_ssim.png", "accumulation_consistency.png",
                 "accumulation_tsed.png", "accumulation_fidelity_psnr_by_step.png", "loop_closure_fidelity_psnr.png"):
        assert (out / "figures" / name).is_file(), name
    page = (out / "index.html").read_text()
    assert "Error accumulation and loop closure" in page and "closing - opening" in page
    # Two tables: per view (distances 1 to 4; the NeRF score only at its held-out views 2, 4, 6) and per pair.
    assert "<th>metric/method</th><th>d=1</th><th>d=2</th><th>d=3</th><th>d=4</th>" in page
    assert "<tr><td>consistency_psnr / noise</td><td>-</td><td>8.00</td><td>-</td><td>8.00</td></tr>" in page
    assert "<th>metric/method</th><th>d=0.5</th><th>d=1.5</th><th>d=2.5</th><th>d=3.5</th>" in page
    assert "<tr><td>tsed / xunet/stochastic</td><td>1.00</td><td>0.50</td><td>0.50</td><td>0.00</td></tr>" in page
    for metric in ("fidelity_psnr", "fidelity_ssim", "NeRF consistency score", "TSED"):
        assert f"<figcaption>{metric} against the distance from the input view" in page
    assert "lack tsed_pairs.csv" not in page


def test_run_without_tsed_pairs_is_reported_with_a_note(tmp_path):
    from pipeline.cli import main

    root = write_accumulation_run(tmp_path / "runs")
    old = sorted((root / "ScoreScene").glob("xunet-stochastic-*"))
    for folder in old:  # scored by an nvsc that did not write the file yet
        (folder / "tsed_pairs.csv").unlink()
    assert main(["report", str(root), "--out", str(tmp_path / "out"), "--no-animations",
                 "--bootstrap-resamples", "100"]) == 0
    curve = pd.read_csv(tmp_path / "out" / "accumulation.csv")
    assert "xunet/stochastic" not in set(curve.loc[curve["metric"] == "tsed", "method"])
    assert "xunet/stochastic" in set(curve.loc[curve["metric"] == "consistency_psnr", "method"])
    page = (tmp_path / "out" / "index.html").read_text()
    assert f"leaves out 2 of 10 (scene, method) results: their ScoreScene folders (e.g. {old[0]}) lack " \
           "tsed_pairs.csv" in page
    assert "run `nvsc run` again with the same settings to rescore them in place" in page


def test_distances_and_loop_ends_against_direct_computation():
    c2w = orbit(VIEWS)
    frame = ring_distances(c2w, 2)
    assert frame["index_distance"].tolist() == [2, 1, 0, 1, 2, 3, 4, 3]
    np.testing.assert_allclose(frame["angle_deg"], 45.0 * frame["index_distance"], atol=1e-6)
    with pytest.raises(InvalidInputError, match="input_view"):
        ring_distances(c2w, VIEWS)
    pairs = pd.DataFrame({"method": "m", "scene": "s", "first": [0, 1, 7], "second": [1, 2, 0],
                          "step": [1.0, 1.5, 7.0], "metric": "overlap_psnr", "value": [20.0, 19.0, 12.0]})
    ends = opening_and_closing(pairs)
    assert ends[["opening", "closing", "opening_at", "closing_at"]].values.tolist() == [[20.0, 12.0, "0-1", "7-0"]]


def test_malformed_per_view_scores_stop_the_report_before_it_writes(tmp_path, capsys):
    from pipeline.cli import main

    root = write_accumulation_run(tmp_path / "runs")
    per_view = next((root / "ScoreScene").glob("noise-*")) / "per_view.csv"
    pd.read_csv(per_view).drop(columns=["kind"]).to_csv(per_view, index=False)
    assert main(["report", str(root), "--out", str(tmp_path / "out")]) == 2
    assert f"{per_view}: lacks the columns ['kind']" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_page_tables_are_escaped_and_rounded():
    from reports.html_page import frame_html

    table = pd.DataFrame({"opening": [21.456], "closing - opening": [-1.0]},
                         index=pd.MultiIndex.from_tuples([("<b>x</b>", "fidelity_psnr")], names=["method", "metric"]))
    text = frame_html(table)
    assert "<th>method/metric</th><th>opening</th><th>closing - opening</th>" in text
    assert "<td>&lt;b&gt;x&lt;/b&gt; / fidelity_psnr</td><td>21.46</td><td>-1.00</td>" in text
    assert "<td>a</td><td>-</td><td>2.00</td>" in frame_html(pd.DataFrame({"d=1": [math.nan], "d=2": [2.0]},
                                                                           index=["a"]))
