"""The configuration files `nvsc run` reads, checked before anything runs.

Luigi takes every option of a task's section that names one of its parameters and ignores the rest, with at most a
warning: `stpes = 500` under `[TrainGenerator]` or a misspelt section name leaves the default in effect. Here every
section of every file must be one that something reads, and every option of an nvsc section one of its parameters;
anything else is refused by file, section and option, with the nearest known name.
"""

from __future__ import annotations

import configparser
import difflib
from collections.abc import Iterable
from pathlib import Path

from luigi.configuration import LuigiConfigParser
from luigi.task_register import Register

import pipeline.tasks  # noqa: F401 - registers nvsc's tasks, whose names are the sections checked here
from scenes.errors import InvalidInputError

#: Sections that Luigi and its contrib modules read themselves (their `luigi.Config` classes and the sections they
#: read directly), whether or not the module that reads them is imported in this process. Their options are Luigi's
#: business; `[DEFAULT]` only supplies values for interpolation.
LUIGI_SECTIONS = frozenset({
    "DEFAULT", "core", "worker", "scheduler", "retcode", "logging", "email", "smtp", "sendgrid", "batch_email",
    "batch_notifier", "execution_summary", "cors", "task_history", "resources", "upstream", "hadoop", "hadoopcli",
    "hdfs", "webhdfs", "hive", "pig", "spark", "pyspark_runner", "redis", "elasticsearch", "postgres", "mysql",
    "mssql", "redshift", "sqlalchemy", "salesforce", "presto", "prometheus", "datadog", "kubernetes", "OpenPai",
    "dockerconfig", "bigquery", "gcs", "s3", "ecs", "batch", "lsf", "sge", "slurm",
})
#: Prefixes of nvsc's named sections, checked by whoever reads them (generators.registry, TrainGenerator).
GENERATOR_PREFIX, ARCHITECTURE_PREFIX = "generator.", "TrainGenerator."


def config_files() -> list[Path]:
    """The files Luigi reads, in the order it reads them (later ones win): those of its search path that exist."""
    return [Path(path) for path in LuigiConfigParser._config_paths if Path(path).is_file()]


def check_config_files(paths: Iterable[Path]) -> None:
    """`InvalidInputError` for the first section or option of the files `paths` that nothing reads."""
    from generators.checkpoint import ARCHITECTURES

    classes = {name: cls for name, cls in Register._get_reg().items() if isinstance(cls, type)}
    nvsc_sections = {name: cls for name, cls in classes.items() if not cls.__module__.startswith("luigi")}
    architectures = [ARCHITECTURE_PREFIX + architecture for architecture in ARCHITECTURES]
    known = [*nvsc_sections, GENERATOR_PREFIX + "<name>", *architectures]
    for path in paths:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.optionxform = str  # as Luigi's parser: option names are case-sensitive
        try:
            parser.read(path)
        except configparser.Error as error:
            raise InvalidInputError(path, f"is not a valid configuration file ({error})",
                                    "write it in INI syntax, as luigi.cfg is") from None
        for section in parser.sections():
            if section in LUIGI_SECTIONS or section.startswith(GENERATOR_PREFIX) or (
                    section in classes and section not in nvsc_sections):
                continue
            if section.startswith(ARCHITECTURE_PREFIX):
                if section not in architectures:
                    raise InvalidInputError(f"{path} [{section}]", "names no architecture",
                                            f"name one of {nearest(section, architectures, '[{}]')}")
                options = [name for name in parameters(nvsc_sections["TrainGenerator"]) if name != "architecture"]
            elif section in nvsc_sections:
                options = parameters(nvsc_sections[section])
            else:
                raise InvalidInputError(f"{path} [{section}]", "is a section that neither nvsc nor Luigi reads",
                                        f"name one of {nearest(section, known, '[{}]')}, or one of Luigi's own "
                                        "such as [core], [worker], [scheduler], [retcode]")
            for option in parser.options(section):
                if option not in options and option not in parser.defaults():
                    raise InvalidInputError(f"{path} [{section}] {option}", f"is not an option of [{section}]",
                                            f"set one of {nearest(option, options)}")


def parameters(cls) -> list[str]:
    """Every parameter name of a task or config class (insignificant ones too: `device` is set in luigi.cfg)."""
    return [name for name, _ in cls.get_params()]


def nearest(name: str, names: Iterable[str], form: str = "'{}'") -> str:
    """The known `names` (each written as `form`), led by the one closest to `name` where one is (a likely typo)."""
    names = sorted(names)
    listing = ", ".join(form.format(known) for known in names)
    close = difflib.get_close_matches(name, names, n=1)
    return f"{form.format(close[0])} (known: {listing})" if close else listing
