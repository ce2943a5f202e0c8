"""The `nvsc` command line: a thin front end to Luigi.

    nvsc run [TASK] [luigi options] [--strict-metrics]
                                         run TASK (default BuildReport) and everything it needs
    nvsc render-meshes MESH... --out DIR  render your own meshes into the SRN layout the pipeline reads
    nvsc report RUN_DIR... [--out DIR]   rebuild the report from the cached outputs of one or several runs
    nvsc weights list|fetch [NAME...]|import FILE [--name NAME]
                                         the metric networks' weights (LPIPS, FID/KID) in $NVSC_WEIGHTS_DIR
    nvsc generator info [PRESET|CHECKPOINT...]   parameter counts of architecture presets and checkpoints
    nvsc generator train --data ROOT --out DIR   train a generator outside the pipeline (also under torchrun)

`nvsc run` passes its options to Luigi unchanged, so `--workers 2`, `--scheduler-host HOST` (a central `luigid`)
and per-task overrides such as `--TrainGenerator-steps 500` work as they do for the `luigi` command. Without a
scheduler option it uses Luigi's local scheduler. Defaults come from `luigi.cfg` in the working directory and the
files named by `--config`.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import socket
import sys
import urllib.parse
from pathlib import Path

import luigi
import luigi.configuration
import luigi.interface
import luigi.retcodes
from luigi.cmdline_parser import CmdlineParser
from luigi.task_register import Register, TaskClassNotFoundException

import pipeline.tasks  # noqa: F401 - registers the tasks with Luigi so `nvsc run TASK` finds them
from pipeline.configuration import check_config_files, config_files
from pipeline.outputs import remove_stale_staging
from scenes.errors import InvalidInputError

SCHEDULER_OPTIONS = ("--local-scheduler", "--scheduler-host", "--scheduler-url", "--scheduler-port")


def walk_dag(task: luigi.Task) -> list[luigi.Task]:
    """Instantiate every task `task` depends on, so that bad parameters raise before anything runs; returns them
    all, `task` first."""
    return [task] + [t for upstream in luigi.task.flatten(task.requires()) for t in walk_dag(upstream)]


def check_task_name(name: str) -> None:
    """An `InvalidInputError` listing nvsc's tasks unless Luigi knows a task `name`."""
    try:
        Register.get_task_cls(name)
    except TaskClassNotFoundException:
        base = pipeline.tasks.NvscTask
        names = sorted(task for task, cls in vars(pipeline.tasks).items()
                       if isinstance(cls, type) and issubclass(cls, base) and cls.produce is not base.produce)
        raise InvalidInputError("TASK", f"nvsc has no task {name!r}",
                                f"name one of {', '.join(names)} (default BuildReport)") from None


def task_from_command_line(cmdline: CmdlineParser, name: str) -> luigi.Task:
    """The task `cmdline` names, with an `InvalidInputError` for a value Luigi cannot parse."""
    try:
        return cmdline.get_task_obj()
    except ValueError as error:  # Luigi says "Error when parsing the default value of 'methods'", even for ours
        parameter = re.search(r"value of '(\w+)'", str(error))
        problem = f"the value given for {parameter[1]} cannot be parsed" if parameter else str(error)
        raise InvalidInputError(name, problem,
                                "check that parameter's value: lists and dicts are JSON, e.g. "
                                "--BuildReport-methods '[\"ground_truth\", \"noise\"]'") from None


def run(argv: list[str]) -> int:
    """Run a pipeline task through Luigi; print where its output is. Returns the process exit code."""
    parser = argparse.ArgumentParser(prog="nvsc run", add_help=False)
    parser.add_argument("--config", action="append", default=[], help="Extra luigi.cfg file (later ones win).")
    parser.add_argument("--strict-metrics", action="store_true",
                        help="Fail on a score whose metric weights are missing instead of reporting it as n/a.")
    known, luigi_args = parser.parse_known_args(argv)
    for path in known.config:
        if not Path(path).is_file():
            raise InvalidInputError("--config", f"{path} does not exist", "pass the path of a luigi.cfg file")
        luigi.configuration.add_config_path(path)
    check_config_files(config_files())  # a misspelt option would leave its default in effect, with no error
    if known.strict_metrics:
        for section in ("ScoreScene", "ScoreMethodSet"):
            luigi.configuration.get_config().set(section, "strict_metrics", "true")
    if not luigi_args or luigi_args[0].startswith("-"):
        luigi_args = ["BuildReport", *luigi_args]
    if not any(arg.split("=")[0] in SCHEDULER_OPTIONS for arg in luigi_args):
        luigi_args.append("--local-scheduler")
    # `main` has configured logging for nvsc and Luigi alike; Luigi's own set-up would print every line twice.
    luigi.configuration.get_config().set("core", "no_configure_logging", "true")
    check_task_name(luigi_args[0])
    with CmdlineParser.global_instance(luigi_args) as cmdline:
        task = task_from_command_line(cmdline, luigi_args[0])
        tasks = walk_dag(task)  # unknown methods, samplers or presets fail here, with one message, before any work
        for each in tasks:
            if isinstance(each, pipeline.tasks.NvscTask):
                each.check_parameters()
        output = task.output()
        if known.strict_metrics:  # a finished report would not run its scores again: check their weights now
            for scoring in tasks:
                if getattr(scoring, "strict_metrics", False):
                    pipeline.tasks.require_weights(scoring.metric_weights())
        check_scheduler(luigi.interface.core())
        root = Path(pipeline.tasks.nvsc().output_root)  # tasks that will not stage again leave theirs here too
        for family in (path for path in root.glob("*") if path.is_dir()):
            remove_stale_staging(family)
        config = luigi.configuration.get_config()
        if not config.has_option("core", "lock_pid_dir"):
            # Luigi refuses a command line that runs already, keyed on its text alone: kept per output root, the
            # same command in another project folder is not refused, while two runs on one root still meet here
            # or, with other command lines, wait for each other's tasks (FolderTarget.claimed).
            lock_dir = (root / ".luigi-locks").resolve()
            lock_dir.mkdir(parents=True, exist_ok=True)  # Luigi makes only the last folder of the path
            config.set("core", "lock_pid_dir", str(lock_dir))
        codes = luigi.retcodes.retcode()  # [retcode] of luigi.cfg: the exit codes of the `luigi` command
    try:  # Luigi's own run, with the `luigi` command's exit codes
        luigi.retcodes.run_with_retcodes(luigi_args)
        code = 0
    except SystemExit as finished:
        code = finished.code or 0
    if code in (codes.already_running, codes.not_run) and task.complete():
        # Other workers (another run on the same root, or a central scheduler's) built what this run asked for
        # while it waited: the output is there and complete, so the run succeeded.
        code = 0
    if code == 0:
        report = Path(output.path)
        print(f"\nnvsc: done. Output: {report.resolve()}")
        if (report / "summary.md").is_file():
            print((report / "summary.md").read_text())
            print((report / "controls.txt").read_text())
            print(f"Report page: {(report / 'index.html').resolve()}")
    elif code in (codes.already_running, codes.not_run):
        print("\nnvsc: nothing failed, but this run could not go on: the same command is already running on this "
              "machine, or other workers are running tasks it needs (see above). Run it again once they finish; "
              "with a central scheduler, --worker-keep-alive makes a worker wait for the others.", file=sys.stderr)
    else:
        print("\nnvsc: the run did not complete; see the errors above. Completed tasks are kept: fix the input "
              "and run the same command again to go on from them.", file=sys.stderr)
    return code


def check_scheduler(core: luigi.interface.core) -> None:
    """An `InvalidInputError` unless the central scheduler the run names accepts connections (Luigi itself would
    retry for a minute, then end in a traceback)."""
    if core.local_scheduler:
        return
    url = core.scheduler_url or f"http://{core.scheduler_host}:{core.scheduler_port}"
    parts = urllib.parse.urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port or 80), timeout=10).close()
    except OSError as error:
        raise InvalidInputError("--scheduler-host", f"no Luigi scheduler answers at {url} ({error})",
                                "start `luigid --port PORT` on that machine first, or leave out the scheduler "
                                "options to use a local scheduler") from None


def render_meshes(argv: list[str]) -> int:
    """Render a user's meshes into the SRN layout with the procedural dataset's cameras. Meshes go to the splits in
    the order given; without split counts, about a fifth of them (at least one) go to test, one to val from 6 meshes
    on, and the rest to train."""
    from scenes.dataset import ProceduralDatasetConfig, mesh_split_counts, render_mesh_dataset

    parser = argparse.ArgumentParser(prog="nvsc render-meshes", description=render_meshes.__doc__)
    parser.add_argument("meshes", nargs="+", type=Path, help="OBJ, GLB or PLY files.")
    parser.add_argument("--out", type=Path, required=True, help="Dataset root to write (SRN layout).")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--test-views", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    for split in ("train", "val", "test"):
        parser.add_argument(f"--{split}-instances", type=int, default=None,
                            help=f"Meshes for the {split} split (0 when only another split's count is given).")
    args = parser.parse_args(argv)
    counts = mesh_split_counts(len(args.meshes), args.train_instances, args.val_instances, args.test_instances)
    config = ProceduralDatasetConfig(image_size=args.image_size, test_views=args.test_views, seed=args.seed,
                                     train_instances=counts["train"], val_instances=counts["val"],
                                     test_instances=counts["test"])
    written = render_mesh_dataset(args.meshes, args.out, config)
    print(f"nvsc: rendered {len(written)} instances ({', '.join(f'{k} {v}' for k, v in counts.items())}) into "
          f"{args.out.resolve()}; run the pipeline on them with `nvsc run --PrepareDataset-source {args.out} "
          f"--PrepareDataset-image-size {args.image_size}`")
    return 0


def report(argv: list[str]) -> int:
    """Rebuild tables, figures and the HTML page from the cached scores, views and renders of one or several run
    folders (output roots of `nvsc run`), merged into one comparison. Nothing is recomputed."""
    from reports.assemble import ReportConfig, build_report
    from reports.run_folders import collect_runs
    from reports.tables import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED

    parser = argparse.ArgumentParser(prog="nvsc report", description=report.__doc__)
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="Output root of `nvsc run` (`runs/`), or one BuildReport folder in it.")
    parser.add_argument("--out", type=Path, default=Path("report"), help="Folder to write (default: ./report).")
    parser.add_argument("--bootstrap-resamples", type=int, default=BOOTSTRAP_RESAMPLES)
    parser.add_argument("--seed", type=int, default=BOOTSTRAP_SEED, help="Seed of the bootstrap resampling.")
    parser.add_argument("--no-animations", action="store_true", help="Skip the turntable GIF/MP4 files.")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        raise InvalidInputError("--out", f"{args.out} is a file", "name a folder (new or an earlier report's)")
    runs = collect_runs(args.runs)
    config = ReportConfig(bootstrap_resamples=args.bootstrap_resamples, seed=args.seed,
                          animations=not args.no_animations)
    page = build_report(runs, args.out, config)
    print((args.out / "summary.md").read_text())
    print((args.out / "controls.txt").read_text())
    print(f"Report page: {page.resolve()}")
    return 0


def weights_command(argv: list[str]) -> int:
    """Manage the weights of the metric networks (LPIPS, FID/KID) in the cache folder, for offline scoring."""
    from reports import weights

    parser = argparse.ArgumentParser(prog="nvsc weights", description=weights_command.__doc__)
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="Show which weights are cached and whether their checksums are verified.")
    fetch = actions.add_parser("fetch", help="Download weights (default: all) with checksum checks.")
    fetch.add_argument("names", nargs="*", help=f"Some of: {', '.join(weights.MANIFEST)}.")
    take = actions.add_parser("import", help="Copy a weight file obtained by hand into the cache.")
    take.add_argument("file", type=Path)
    take.add_argument("--name", choices=list(weights.MANIFEST),
                      help="Which weights the file holds, when neither its checksum nor its name says so.")
    args = parser.parse_args(argv)
    print(f"nvsc: weights cache {weights.weights_dir()} (set ${weights.WEIGHTS_DIR_ENV} to move it)")
    if args.action == "fetch":
        for path in weights.fetch(args.names or None):
            print(f"  {path}")
    elif args.action == "import":
        name, path, verified = weights.import_file(args.file, args.name)
        note = "checksum verified" if verified else "checksum NOT the published one: scores not comparable"
        print(f"  {name}: {path} ({note})")
    else:
        for row in weights.list_weights():
            state = ("verified" if row["verified"] else "unverified") if row["present"] else "missing"
            print(f"  {row['name']:<18} {state:<10} {row['file']:<44} {row['description']}")
    return 0


def generator(argv: list[str]) -> int:
    """Inspect generator presets and checkpoints, or train one on a dataset in the SRN layout.

    Several GPUs: `torchrun --nproc-per-node N -m pipeline.cli generator train ...` (every process gets a slice
    of each batch; rank 0 writes the checkpoint). A killed run continues from its last checkpoint when restarted;
    --out naming any other checkpoint is refused unless --overwrite is given.
    """
    from generators.checkpoint import ARCHITECTURES
    from generators.multiview_unet import MULTIVIEW_PRESETS
    from generators.xunet import PRESETS

    parser = argparse.ArgumentParser(prog="nvsc generator", description=generator.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="Print parameter counts (a table) of presets and checkpoint folders.")
    info.add_argument("names", nargs="*", help=f"Presets ({', '.join(PRESETS)}) or checkpoint folders; "
                                               "all presets when none is given.")
    info.add_argument("--architecture", default="xunet", choices=sorted(ARCHITECTURES),
                      help="Architecture the presets are counted for.")
    train = commands.add_parser("train", help="Train on the train split of an SRN-layout dataset.")
    train.add_argument("--data", type=Path, required=True, help="Dataset root (holds *_train folders).")
    train.add_argument("--out", type=Path, required=True, help="Checkpoint folder to write (and resume).")
    train.add_argument("--overwrite", action="store_true",
                       help="Train from scratch over a checkpoint in --out that cannot be resumed (a finished or "
                            "another model's one); without it such a folder is refused.")
    train.add_argument("--preset", default="3dim-64", choices=sorted(set(PRESETS) | set(MULTIVIEW_PRESETS)),
                       help="A preset of the architecture (default 3dim-64, 64x64 views; mvdiffusion: "
                            "generators.multiview_unet's; tiny for the demo's 32x32 data).")
    train.add_argument("--architecture", default="xunet", choices=sorted(ARCHITECTURES))
    train.add_argument("--image-size", type=int, default=None, help="Default: the preset's.")
    train.add_argument("--steps", type=int, default=100_000)
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--grad-accumulation", type=int, default=1)
    train.add_argument("--lr", type=float, default=1e-4)
    train.add_argument("--warmup-steps", type=int, default=10_000)
    train.add_argument("--checkpoint-every", type=int, default=1000)
    train.add_argument("--loss", default="eps", choices=["eps", "v"],
                       help="eps or v MSE (TrainConfig.loss; v wants a preset that predicts v, e.g. small-32).")
    train.add_argument("--ema-decay", type=float, default=0.999)
    train.add_argument("--compile", action="store_true", help="torch.compile the model (faster after minutes).")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto")
    train.add_argument("--tensorboard", type=Path, default=None, help="Folder for TensorBoard event files.")
    args = parser.parse_args(argv)
    if args.command == "info":
        from generators.info import describe, format_table

        print(format_table(describe(args.names, args.architecture)))
        return 0

    from dataclasses import replace

    from generators.checkpoint import presets_of
    from generators.multiview_training import train_multiview
    from generators.training import TrainConfig, train_generator
    from scenes.srn import list_srn_instances, read_srn_instance

    presets = presets_of(args.architecture)
    if args.preset not in presets:
        raise InvalidInputError("--preset", f"{args.preset} is not a preset of {args.architecture}",
                                f"use one of: {', '.join(presets)}")
    model_config = presets[args.preset]
    if args.image_size is not None:
        model_config = replace(model_config, image_size=args.image_size)
    train_config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                               warmup_steps=args.warmup_steps, checkpoint_every=args.checkpoint_every,
                               seed=args.seed, device=args.device, architecture=args.architecture,
                               compile=args.compile, grad_accumulation=args.grad_accumulation, loss=args.loss,
                               ema_decay=args.ema_decay, overwrite=args.overwrite)
    paths = list_srn_instances(args.data, "train")
    scenes = [read_srn_instance(path, image_size=model_config.image_size) for path in paths]
    if args.architecture == "mvdiffusion":  # groups of num_views views; --batch-size counts groups
        depths = None
        if model_config.uses_depth:
            from generators.multiview_training import resize_depth
            from scenes.srn import read_srn_depth

            depths = [resize_depth(read_srn_depth(path), model_config.image_size, str(path)).numpy()
                      for path in paths]
        out = train_multiview(scenes, depths, model_config, train_config, args.out, log_dir=args.tensorboard)
    else:
        out = train_generator(scenes, model_config, train_config, args.out, log_dir=args.tensorboard)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every process gets here; rank 0 wrote the checkpoint
        print(f"nvsc: checkpoint in {out.resolve()}")
    return 0


COMMANDS = {"run": run, "render-meshes": render_meshes, "generator": generator, "report": report,
            "weights": weights_command}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(__doc__)
        if argv and argv[0] in ("-h", "--help"):
            return 0
        if argv:
            print(f"nvsc: error: unknown command {argv[0]!r}: use one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[argv[0]](argv[1:])
    except InvalidInputError as error:
        print(f"nvsc: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nnvsc: interrupted. What was complete is kept (finished tasks, the last checkpoint): run the same "
              "command again to go on from it.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
