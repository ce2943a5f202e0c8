"""Training settings per architecture: `[TrainGenerator.<architecture>]` in luigi.cfg replaces `[TrainGenerator]`
for the options it sets, for that architecture only; the command line and a requiring task's arguments win over
both; the output folder follows the values in effect; a misspelt section or option is refused by name."""

from __future__ import annotations

import luigi
import luigi.configuration
import pytest
from luigi.cmdline_parser import CmdlineParser

from pipeline.tasks import ARCHITECTURE_SECTION, GenerateViews, PrepareDataset, TrainGenerator, nvsc
from scenes.errors import InvalidInputError

SECTION = ARCHITECTURE_SECTION + "mvdiffusion"


@pytest.fixture
def config(tmp_path):
    """luigi's global configuration without any architecture section and with its output root in `tmp_path`; the
    configuration as it was (luigi.cfg's own sections included) is put back after the test."""
    parser = luigi.configuration.get_config()
    before = {section: dict(parser.items(section, raw=True)) for section in parser.sections()}
    for section in before:
        if section.startswith(ARCHITECTURE_SECTION):
            parser.remove_section(section)
    if not parser.has_section("nvsc"):
        parser.add_section("nvsc")
    parser.set("nvsc", "output_root", str(tmp_path))
    nvsc.clear_instance_cache()
    yield parser
    nvsc.clear_instance_cache()
    for section in parser.sections():
        parser.remove_section(section)
    for section, options in before.items():
        parser.add_section(section)
        for option, value in options.items():
            parser.set(section, option, value)


def test_an_architecture_section_sets_that_architectures_training_only(config):
    shared = TrainGenerator(architecture="xunet")
    config.add_section(SECTION)
    config.set(SECTION, "steps", "7")
    config.set(SECTION, "batch_size", "3")

    joint = TrainGenerator(architecture="mvdiffusion")
    assert (joint.steps, joint.batch_size) == (7, 3)
    # Everything the section does not set comes from [TrainGenerator], as for every other architecture.
    assert (joint.preset, joint.lr, joint.seed) == (config.get("TrainGenerator", "preset"),
                                                    config.getfloat("TrainGenerator", "lr"),
                                                    config.getint("TrainGenerator", "seed"))
    sequential = TrainGenerator(architecture="xunet")
    assert sequential.steps == config.getint("TrainGenerator", "steps")
    assert sequential.output().path == shared.output().path

    # The folder hashes the values in effect: the same values written as arguments name the same folder, and the
    # section's values give another folder than the shared ones.
    explicit = TrainGenerator(architecture="mvdiffusion", steps=7, batch_size=3)
    assert explicit.output().path == joint.output().path
    assert joint.output().path != TrainGenerator(architecture="mvdiffusion", steps=config.getint(
        "TrainGenerator", "steps"), batch_size=config.getint("TrainGenerator", "batch_size")).output().path
    # GenerateViews asks for the joint model by architecture alone and gets the section's training.
    method = GenerateViews(scene=PrepareDataset().test_scene_names()[0], method="mvdiffusion/joint")
    assert method.requires()["generator"].output().path == joint.output().path


def test_arguments_and_the_command_line_win_over_the_section(config):
    config.add_section(SECTION)
    config.set(SECTION, "steps", "7")
    config.set(SECTION, "preset", "tiny")
    assert TrainGenerator(architecture="mvdiffusion", steps=9).steps == 9
    with CmdlineParser.global_instance(["BuildReport", "--TrainGenerator-steps", "11", "--local-scheduler"]):
        joint, sequential = TrainGenerator(architecture="mvdiffusion"), TrainGenerator(architecture="xunet")
        assert (joint.steps, sequential.steps) == (11, 11)
        assert joint.preset == "tiny"  # not on the command line: still the section's


@pytest.mark.parametrize("section, option, value, named", [
    (ARCHITECTURE_SECTION + "mvdifusion", "steps", "7", "[TrainGenerator.mvdifusion]"),
    (SECTION, "stpes", "7", "'stpes'"),
    (SECTION, "architecture", "xunet", "'architecture'"),
    (SECTION, "steps", "many", "steps"),
])
def test_a_bad_section_or_option_is_named(config, section, option, value, named):
    config.add_section(section)
    config.set(section, option, value)
    with pytest.raises(InvalidInputError, match=named.replace("[", r"\[").replace("]", r"\]")):
        TrainGenerator(architecture="mvdiffusion")
