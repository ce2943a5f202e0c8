"""`nvsc generator info`: parameter counts of presets and checkpoint folders, against the models themselves."""

import pytest
import torch

from generators.checkpoint import save_checkpoint
from generators.concat_unet import ConcatUNet
from generators.xunet import PRESETS, XUNet
from pipeline.cli import main
from scenes.errors import InvalidInputError
from tests.generators.micro_model import MICRO


def test_info_prints_the_parameter_count_of_every_preset(capsys):
    assert main(["generator", "info"]) == 0
    out = capsys.readouterr().out
    for name, config in PRESETS.items():
        with torch.device("meta"):
            count = sum(p.numel() for p in XUNet(config).parameters())
        line = next(line for line in out.splitlines() if line.startswith(f"| {name} "))
        assert f"{count:,}" in line


def test_info_reads_a_checkpoint_folder_of_either_architecture(tmp_path, capsys):
    for model in (XUNet(MICRO), ConcatUNet(MICRO)):
        folder = save_checkpoint(tmp_path / type(model).__name__, model, model, MICRO, step=12)
        assert main(["generator", "info", str(folder)]) == 0
        line = capsys.readouterr().out.splitlines()[-1]
        count = sum(p.numel() for p in model.parameters())
        assert f"{count:,}" in line and ("concat_unet" in line) == isinstance(model, ConcatUNet) and "12" in line


def test_info_refuses_unknown_names(capsys):
    assert main(["generator", "info", "3dim-999"]) == 2
    assert "3dim-999" in capsys.readouterr().err
    from generators.info import describe

    with pytest.raises(InvalidInputError, match="neither a preset of xunet nor a checkpoint folder"):
        describe(["3dim-999"])
    with pytest.raises(InvalidInputError, match="Fix: add --architecture mvdiffusion"):  # another's preset
        describe(["mvd-64"])


def test_generator_train_command_trains_an_srn_dataset_and_resumes(tmp_path, capsys):
    from generators.checkpoint import load_checkpoint, load_train_state
    from scenes.srn import write_srn_instance
    from tests.generators.micro_model import make_scenes

    for index, scene in enumerate(make_scenes(2, 3, 8)):
        write_srn_instance(scene, tmp_path / "data" / "cars_train" / f"car{index}")
    args = ["generator", "train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "ckpt"), "--preset",
            "tiny", "--image-size", "8", "--batch-size", "2", "--warmup-steps", "1", "--checkpoint-every", "2",
            "--device", "cpu", "--architecture", "concat_unet"]
    assert main([*args, "--steps", "2"]) == 0
    assert main([*args, "--steps", "3"]) == 0  # continues the run in the same folder
    model, config = load_checkpoint(tmp_path / "ckpt", architecture="concat_unet", image_size=8)
    assert isinstance(model, ConcatUNet) and config.ch == PRESETS["tiny"].ch
    assert load_train_state(tmp_path / "ckpt")["step"] == 3
    assert "checkpoint in" in capsys.readouterr().out


def test_generator_train_command_refuses_a_finished_checkpoint_unless_overwrite(tmp_path, capsys):
    from generators.checkpoint import load_train_state
    from scenes.srn import write_srn_instance
    from tests.generators.micro_model import make_scenes

    for index, scene in enumerate(make_scenes(2, 3, 8)):
        write_srn_instance(scene, tmp_path / "data" / "cars_train" / f"car{index}")
    args = ["generator", "train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "ckpt"), "--preset",
            "tiny", "--image-size", "8", "--batch-size", "2", "--warmup-steps", "1", "--checkpoint-every", "2",
            "--device", "cpu", "--steps", "2"]
    assert main([*args, "--architecture", "concat_unet"]) == 0
    (tmp_path / "ckpt" / "train_state.pt").unlink()
    weights = (tmp_path / "ckpt" / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main([*args, "--architecture", "xunet"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'ckpt'}: " in err and "--overwrite" in err and err.count("nvsc: error") == 1
    assert (tmp_path / "ckpt" / "model.safetensors").read_bytes() == weights
    assert main([*args, "--architecture", "xunet", "--overwrite"]) == 0
    assert load_train_state(tmp_path / "ckpt")["step"] == 2
