"""Exact resume: a training process killed with SIGKILL at an arbitrary moment, started again, ends with the weights
of a run that was never interrupted; the DDP processes of `torchrun` agree with each other and with one process."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from generators.checkpoint import load_train_state
from generators.training import TrainConfig, train_generator
from scenes.errors import InvalidInputError
from tests.generators.micro_model import MICRO, make_scenes

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def script(out: Path, steps: int, batch: int, every: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tests.generators.train_script", str(out), "--steps", str(steps),
            "--batch-size", str(batch), "--checkpoint-every", str(every), *extra]


def checkpoint_step(folder: Path) -> int:
    """Step of the checkpoint in `folder`, or of the one a killed save left aside in `.NAME.old` (0 if none)."""
    steps = [0]
    for candidate in (folder, folder.parent / f".{folder.name}.old"):
        try:
            steps.append(json.loads((candidate / "config.json").read_text())["step"])
        except (OSError, ValueError, KeyError):
            pass
    return max(steps)


def assert_same_weights(a: Path, b: Path) -> None:
    for file in ("model.safetensors", "ema.safetensors"):
        left, right = load_file(str(a / file)), load_file(str(b / file))
        assert left.keys() == right.keys()
        for name in left:
            assert torch.equal(left[name], right[name]), f"{file}: {name} differs"


def test_a_killed_run_restarted_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    steps, every = 100, 10
    reference = subprocess.Popen(script(tmp_path / "reference", steps, 4, every), cwd=ROOT, env=ENV,
                                 stderr=subprocess.DEVNULL)
    victim = subprocess.Popen(script(tmp_path / "victim", steps, 4, every), cwd=ROOT, env=ENV,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while checkpoint_step(tmp_path / "victim") < 2 * every and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)  # wherever it is: mid-step, mid-checkpoint-write
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    killed_at = checkpoint_step(tmp_path / "victim")
    assert 2 * every <= killed_at < steps, "the kill came too late to test resuming"
    restart = subprocess.run(script(tmp_path / "victim", steps, 4, every), cwd=ROOT, env=ENV, capture_output=True,
                             text=True)
    assert restart.returncode == 0, restart.stderr[-3000:]
    assert f"resumed from step {killed_at} " in restart.stderr  # it continued rather than starting over
    assert reference.wait() == 0
    assert_same_weights(tmp_path / "victim", tmp_path / "reference")
    assert load_train_state(tmp_path / "victim")["step"] == steps
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reference", "victim"], "leftover temporary folders"


def test_resuming_in_process_matches_and_the_optimizer_state_round_trips(tmp_path, caplog):
    scenes = make_scenes(2, 3, 8)
    config = TrainConfig(steps=6, batch_size=4, lr=1e-3, warmup_steps=2, checkpoint_every=3, seed=1, device="cpu")
    train_generator(scenes, MICRO, config, tmp_path / "straight")
    train_generator(scenes, MICRO, replace(config, steps=3), tmp_path / "resumed")
    first = load_train_state(tmp_path / "resumed")
    assert first["step"] == 3 and first["optimizer"]["state"], "optimizer moments are part of the resume state"
    with caplog.at_level(logging.INFO, logger="generators"):
        train_generator(scenes, MICRO, config, tmp_path / "resumed")
    assert "resumed from step 3 " in caplog.text and "steps 4..6" in caplog.text
    assert_same_weights(tmp_path / "resumed", tmp_path / "straight")


def test_gradient_accumulation_follows_the_full_batch(tmp_path):
    scenes = make_scenes(2, 3, 8)
    config = TrainConfig(steps=3, batch_size=4, lr=1e-3, warmup_steps=1, checkpoint_every=3, seed=1, device="cpu")
    train_generator(scenes, MICRO, config, tmp_path / "full")
    train_generator(scenes, MICRO, replace(config, grad_accumulation=2), tmp_path / "halves")
    full, halves = load_file(str(tmp_path / "full" / "model.safetensors")), load_file(
        str(tmp_path / "halves" / "model.safetensors"))
    for name in full:  # the same gradient summed in another order: equal up to float rounding
        torch.testing.assert_close(halves[name], full[name], atol=2e-5, rtol=1e-4)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
def test_torchrun_ddp_ranks_agree_with_each_other_and_with_one_process(tmp_path):
    steps, batch = 4, 4
    dump = tmp_path / "dump"
    dump.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
               "tests.generators.train_script", str(tmp_path / "ddp"), "--steps", str(steps), "--batch-size",
               str(batch), "--checkpoint-every", str(steps), "--dump", str(dump)]
    result = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    single = subprocess.run(script(tmp_path / "single", steps, batch, steps, "--dump", str(tmp_path)), cwd=ROOT,
                            env=ENV, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    rank0, rank1 = load_file(str(dump / "rank0.safetensors")), load_file(str(dump / "rank1.safetensors"))
    one = load_file(str(tmp_path / "rank0.safetensors"))
    saved = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), f"ranks disagree on {name}"
        assert torch.equal(saved[name], rank0[name])
        # Each rank trains half of the same global batch with the same noise and DDP averages the two gradients,
        # which is the whole batch's gradient: one process on the whole batch follows the same trajectory.
        torch.testing.assert_close(rank0[name], one[name], atol=2e-5, rtol=1e-4)


def test_a_diverged_run_stops_with_the_fix_and_keeps_its_last_good_checkpoint(tmp_path, monkeypatch):
    from generators.training import TrainingRun

    real_step = TrainingRun.train_step

    def diverging_step(run, batch):  # the loss of steps 3 on is NaN, as after a divergence
        loss = real_step(run, batch)
        return loss * float("nan") if run.step_count >= 3 else loss

    monkeypatch.setattr(TrainingRun, "train_step", diverging_step)
    config = TrainConfig(steps=6, batch_size=4, warmup_steps=1, checkpoint_every=2, log_every=2, device="cpu")
    with pytest.raises(InvalidInputError, match=r"TrainConfig.lr: training diverged: the mean loss of steps 3-4 is nan"
                                                r".*lower lr \(now 0.001\)"):
        train_generator(make_scenes(2, 3, 8), MICRO, config, tmp_path / "run")
    assert load_train_state(tmp_path / "run")["step"] == 2


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("damage, message", [
    ("finished", r"finished checkpoint \(no train_state.pt, so training cannot resume"),
    ("truncated", r"cannot resume from it: .*model.safetensors: not a readable safetensors file"),
    ("architecture", r"cannot resume from it: .*holds a xunet model"),
])
def test_training_into_an_existing_checkpoint_is_refused_unless_resumable_or_overwrite(tmp_path, damage, message):
    scenes = make_scenes(2, 3, 8)
    config = TrainConfig(steps=2, batch_size=4, warmup_steps=1, checkpoint_every=2, device="cpu")
    folder = train_generator(scenes, MICRO, config, tmp_path / "ckpt")
    if damage == "finished":  # as the pipeline's and the committed checkpoints are: the model, not the run
        (folder / "train_state.pt").unlink()
    elif damage == "truncated":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    again = replace(config, steps=4, architecture="concat_unet" if damage == "architecture" else "xunet")
    before = folder_bytes(folder)
    with pytest.raises(InvalidInputError, match=message) as error:
        train_generator(scenes, MICRO, again, folder)
    assert str(error.value).startswith(f"{folder}: ") and "overwrite" in error.value.fix
    assert folder_bytes(folder) == before, "the refused run wrote into the checkpoint"
    train_generator(scenes, MICRO, replace(again, overwrite=True), folder)  # asked to: trains over it
    assert load_train_state(folder)["step"] == 4
    assert json.loads((folder / "config.json").read_text())["architecture"] == again.architecture


def test_training_into_a_folder_of_other_files_is_refused_even_with_overwrite(tmp_path):
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    config = TrainConfig(steps=1, batch_size=4, warmup_steps=1, checkpoint_every=1, device="cpu", overwrite=True)
    with pytest.raises(InvalidInputError, match="not a checkpoint folder"):
        train_generator(make_scenes(2, 3, 8), MICRO, config, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
