"""`train_generator` on the micro model as a process of its own, for the resume-after-kill and torchrun tests.

    python -m tests.generators.train_script OUT --steps N --batch-size B --checkpoint-every K [--dump DIR]

--dump writes every process's final weights to DIR/rank<R>.safetensors, so a test can compare the ranks.
"""

import argparse
import logging
from pathlib import Path

import torch
from safetensors.torch import save_file

from generators import training
from tests.generators.micro_model import MICRO, make_scenes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--checkpoint-every", type=int, required=True)
    parser.add_argument("--grad-accumulation", type=int, default=1)
    parser.add_argument("--dump", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO)  # the tests read "resumed from step N"
    if args.dump is not None:
        save = training.TrainingRun.save

        def save_and_dump(run: training.TrainingRun, folder: Path) -> None:
            save(run, folder)
            if run.step_count == run.config.steps:
                state = {name: tensor.contiguous() for name, tensor in run.model.state_dict().items()}
                save_file(state, str(args.dump / f"rank{run.group.rank}.safetensors"))

        training.TrainingRun.save = save_and_dump
    config = training.TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=1e-3, warmup_steps=3,
                                  checkpoint_every=args.checkpoint_every, seed=3, device="cpu", log_every=10,
                                  grad_accumulation=args.grad_accumulation)
    training.train_generator(make_scenes(2, 4, 8), MICRO, config, args.out)


if __name__ == "__main__":
    main()
