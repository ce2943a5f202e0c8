"""Configuration files are checked before anything runs: an unknown section or option is refused by name (a typo
would otherwise leave a default in effect), and values out of range are refused under their luigi.cfg names."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.configuration import check_config_files
from scenes.errors import InvalidInputError
from tests.pipeline.conftest import PipelineRunner

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "extra.cfg"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, named, suggestion", [
    ("[TrainGenerator]\nstpes = 10\n", "[TrainGenerator] stpes", "'steps'"),
    ("[TrainGenrator]\nsteps = 10\n", "[TrainGenrator]", "[TrainGenerator]"),
    ("[FitNeRF]\nsteps = 10\nrays = 64\n", "[FitNeRF] rays", "rays_per_batch"),
    ("[nvsc]\noutput = runs\n", "[nvsc] output", "output_root"),
    ("[TrainGenerator.mvdifusion]\nsteps = 7\n", "[TrainGenerator.mvdifusion]", "mvdiffusion"),
    ("[TrainGenerator.mvdiffusion]\nstpes = 7\n", "[TrainGenerator.mvdiffusion] stpes", "'steps'"),
])
def test_an_unknown_section_or_option_is_refused_by_name(tmp_path, text, named, suggestion):
    path = write(tmp_path, text)
    with pytest.raises(InvalidInputError) as error:
        check_config_files([path])
    message = str(error.value)
    assert str(path) in message and named in message and suggestion in message.split("Fix:")[1]


def test_luigis_own_and_nvscs_named_sections_are_allowed(tmp_path):
    path = write(tmp_path, "[core]\nlog_level = INFO\n[worker]\nkeep_alive = true\n[scheduler]\nretry_count = 0\n"
                           "[retcode]\nnot_run = 25\n[logging]\nversion = 1\n[email]\nreceiver = a@b.c\n"
                           "[DEFAULT]\nbase = 1\n[generator.mine]\nfolder = views\n"
                           "[TrainGenerator.mvdiffusion]\nsteps = 7\n[TrainGenerator]\nsteps = 7\n")
    check_config_files([path])


@pytest.mark.parametrize("path", [ROOT / "luigi.cfg", *sorted((ROOT / "configs").glob("*.cfg")),
                                  *sorted((ROOT / "tests" / "pipeline").glob("*.cfg"))], ids=lambda p: p.name)
def test_the_projects_own_configuration_files_pass(path):
    check_config_files([path])


@pytest.mark.parametrize("text, message", [
    ("[TrainGenerator]\nstpes = 10\n", "[TrainGenerator] stpes"),
    ("[TrainGenerator]\nsteps = -5\n", "[TrainGenerator] steps"),
    ("[TrainGenerator]\ncheckpoint_every = 0\n", "[TrainGenerator] checkpoint_every"),
    ("[GenerateViews]\nsampling_steps = 0\n", "[GenerateViews] sampling_steps"),
    ("[FitNeRF]\nrays_per_batch = -1\n", "[FitNeRF] rays_per_batch"),
])
def test_nvsc_run_refuses_a_bad_configuration_before_anything_runs(tmp_path, text, message):
    runner = PipelineRunner(tmp_path)
    path = write(tmp_path, text)
    result = runner("nvsc", "run", "--config", str(path))
    assert result.returncode == 2, result.stderr[-3000:]
    assert message in result.stderr and "Fix:" in result.stderr and "TrainConfig" not in result.stderr
    assert result.stderr.count("nvsc: error") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()
