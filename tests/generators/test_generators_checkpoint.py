"""Checkpoint folders: round trip, atomic rewrite, and one clear error per kind of broken folder."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from generators.checkpoint import load_checkpoint, save_checkpoint
from tests.generators.micro_model import MICRO
from generators.xunet import XUNet
from scenes.errors import InvalidInputError






def random_model(seed: int) -> XUNet:
    torch.manual_seed(seed)
    model = XUNet(MICRO)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.1)
    return model.eval()


def example_inputs():
    g = torch.Generator().manual_seed(3)
    c2w = torch.eye(4).expand(2, 4, 4).clone()
    c2w[:, 2, 3] = 3.0
    return (torch.randn(2, 3, 8, 8, generator=g), torch.tensor([-2.0, 4.0]), torch.rand(2, 3, 8, 8, generator=g),
            c2w, c2w, torch.tensor([8.0, 8.0, 4.0, 4.0]).expand(2, 4))


@pytest.fixture
def checkpoint(tmp_path):
    model, ema = random_model(1), random_model(2)
    folder = save_checkpoint(tmp_path / "ckpt", model, ema, MICRO, step=7)
    return folder, model, ema


@torch.no_grad()
def test_round_trip_gives_identical_outputs(checkpoint):
    folder, model, ema = checkpoint
    config = json.loads((folder / "config.json").read_text())
    assert config["format_version"] == 1 and config["architecture"] == "xunet" and config["step"] == 7
    assert config["image_size"] == 8 and config["schedule"]["logsnr_min"] == -20.0
    loaded_ema, loaded_config = load_checkpoint(folder)
    loaded_raw, _ = load_checkpoint(folder, use_ema=False)
    assert loaded_config == MICRO and not loaded_ema.training
    args = example_inputs()
    assert torch.equal(loaded_ema(*args), ema(*args))
    assert torch.equal(loaded_raw(*args), model(*args))
    assert not torch.equal(loaded_raw(*args), loaded_ema(*args))


def test_saving_again_replaces_the_folder_completely(checkpoint, tmp_path):
    folder, model, ema = checkpoint
    (folder / "stray.txt").write_text("left over")
    save_checkpoint(folder, ema, model, MICRO, step=8)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "ema.safetensors", "model.safetensors"]
    assert json.loads((folder / "config.json").read_text())["step"] == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"], "no temporary folders may be left behind"


def edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def rewrite_weights(folder, edit):
    path = folder / "ema.safetensors"
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path))


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_missing_folder(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")


@pytest.mark.parametrize("breakage, file, message", [
    (lambda f: (f / "config.json").unlink(), "config.json", "missing"),
    (lambda f: (f / "ema.safetensors").unlink(), "ema.safetensors", "missing"),
    (lambda f: (f / "config.json").write_text("{not json"), "config.json", "not valid JSON"),
    (lambda f: truncate(f / "ema.safetensors"), "ema.safetensors", "truncated or corrupt"),
    (lambda f: (f / "ema.safetensors").write_bytes(b"\x00" * 64), "ema.safetensors", "truncated or corrupt"),
    (lambda f: edit_config(f, format_version=2), "config.json", "format_version 2"),
    (lambda f: edit_config(f, architecture="dit"), "config.json", "architecture 'dit'"),
    (lambda f: edit_config(f, model={**MICRO.to_dict(), "depth": 3}), "config.json", "unknown fields"),
    (lambda f: rewrite_weights(f, lambda s: s.pop("conv_in.weight")), "ema.safetensors", "conv_in.weight"),
    (lambda f: rewrite_weights(f, lambda s: s.update(extra=torch.zeros(1))), "ema.safetensors", "extra"),
    (lambda f: rewrite_weights(f, lambda s: s.update({"conv_in.bias": torch.zeros(9)})), "ema.safetensors",
     "conv_in.bias"),
], ids=["no-config", "no-weights", "bad-json", "truncated", "garbage", "format", "architecture", "config-field",
        "missing-key", "extra-key", "shape"])
def test_broken_checkpoints_name_the_file(checkpoint, breakage, file, message):
    folder = checkpoint[0]
    breakage(folder)
    with pytest.raises(InvalidInputError) as error:
        load_checkpoint(folder)
    assert file in str(error.value) and message in str(error.value)


def test_loading_never_unpickles(checkpoint, monkeypatch):
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("checkpoint loading must not unpickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    load_checkpoint(checkpoint[0])


def test_concat_unet_round_trip_and_config_names_the_architecture(tmp_path):
    from generators.concat_unet import ConcatUNet

    torch.manual_seed(0)
    model = ConcatUNet(MICRO)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.1)
    folder = save_checkpoint(tmp_path / "concat", model.eval(), model, MICRO, step=1)
    assert json.loads((folder / "config.json").read_text())["architecture"] == "concat_unet"
    loaded, _ = load_checkpoint(folder, architecture="concat_unet")
    assert type(loaded) is ConcatUNet
    with torch.no_grad():
        assert torch.equal(loaded(*example_inputs()), model(*example_inputs()))


@pytest.mark.parametrize("request_, message", [({"architecture": "concat_unet"}, "holds a 'xunet' model"),
                                               ({"image_size": 64}, "trained at 8x8 pixels, not the requested 64x64")])
def test_checkpoint_of_another_architecture_or_resolution_is_refused(checkpoint, request_, message):
    with pytest.raises(InvalidInputError) as error:
        load_checkpoint(checkpoint[0], **request_)
    assert "config.json" in str(error.value) and message in str(error.value)


def test_truncated_resume_state_names_the_file(tmp_path):
    from generators.checkpoint import load_train_state

    model = random_model(1)
    folder = save_checkpoint(tmp_path / "ckpt", model, model, MICRO, step=3,
                             train_state={"step": 3, "optimizer": {"moments": torch.ones(1000)}})
    assert load_train_state(folder)["step"] == 3
    truncate(folder / "train_state.pt")
    with pytest.raises(InvalidInputError, match="train_state.pt.*truncated or corrupt"):
        load_train_state(folder)


def test_resume_state_with_a_pickled_object_is_refused(tmp_path):
    import pickle

    from generators.checkpoint import load_train_state

    model = random_model(1)
    folder = save_checkpoint(tmp_path / "ckpt", model, model, MICRO, step=3, train_state={"step": 3})

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    for write in (lambda path: path.write_bytes(pickle.dumps({"step": 3, "payload": Payload()})),
                  lambda path: torch.save({"step": 3, "payload": Payload()}, path)):
        write(folder / "train_state.pt")
        with pytest.raises(InvalidInputError, match="train_state.pt: holds objects other than tensors") as error:
            load_train_state(folder)
        # torch's own advice is to load it with weights_only=False, which is what must not be done with it
        assert "weights_only" not in str(error.value) and "trust" not in str(error.value)


def test_a_save_killed_between_its_two_renames_is_recovered(checkpoint, tmp_path):
    from generators.checkpoint import recover_checkpoint

    folder = checkpoint[0]
    (tmp_path / ".ckpt.staging").mkdir()  # a half-written new checkpoint
    folder.rename(tmp_path / ".ckpt.old")  # the old one moved aside, the new one not yet in place
    recover_checkpoint(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert json.loads((folder / "config.json").read_text())["step"] == 7
    load_checkpoint(folder)


def test_every_checkpoint_file_has_the_umasks_modes(checkpoint):
    # safetensors writes owner-only files; a shared runs folder needs the weights as readable as config.json.
    folder, _, _ = checkpoint
    modes = {path.name: path.stat().st_mode & 0o777 for path in folder.iterdir()}
    assert modes["model.safetensors"] == modes["ema.safetensors"] == modes["config.json"], modes


@pytest.mark.parametrize("fails", ["torch.save", "save_file"])
def test_a_failed_write_is_named_and_keeps_the_previous_checkpoint(checkpoint, monkeypatch, fails):
    import generators.checkpoint as module

    folder = checkpoint[0]
    before = {path.name: path.read_bytes() for path in folder.iterdir()}

    def full_disk(*args, **kwargs):
        raise (RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed") if fails ==
               "torch.save" else OSError(28, "No space left on device"))

    monkeypatch.setattr(module.torch if fails == "torch.save" else module, fails.split(".")[-1], full_disk)
    model = random_model(3)
    with pytest.raises(InvalidInputError, match=rf"{folder}: the checkpoint of step 8 could not be written "
                                                r"\(.*\).*kept") as error:
        save_checkpoint(folder, model, model, MICRO, step=8, train_state={"step": 8})
    assert "Fix:" in str(error.value)
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before
    assert sorted(p.name for p in folder.parent.iterdir()) == ["ckpt"], "a staging folder was left behind"
