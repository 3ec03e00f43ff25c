"""The ``gatelab`` command: flags only, the work lives in the modules.

gatelab variants [NAME] [--input 32 --hidden 128]
gatelab train CONFIG[:ARG] [--workdir DIR] [--set KEY=VALUE ...] [--quiet]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import textwrap
import warnings
from pathlib import Path

from gatelab import config as config_lib
from gatelab import families, records, runtime, specs, variants

__all__ = ["main"]


# --------------------------------------------------------------------------------------------------
# gatelab variants
# --------------------------------------------------------------------------------------------------


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return "\n".join(
        [line(headers), line(["-" * w for w in widths])] + [line(r).rstrip() for r in rows]
    )


def _gate_summary(spec: families.Spec) -> str:
    return "; ".join(f"{gate}: {spec.describe_gate(gate)}" for gate in spec.gates)


def _equations(spec: families.Spec) -> str:
    """The literal block after the first ``::`` of the spec class's docstring."""
    doc = inspect.cleandoc(type(spec).__doc__ or "")
    if "::" not in doc:
        return ""
    lines = []
    for line in doc.split("::", 1)[1].strip("\n").splitlines():
        if line and not line.startswith(" "):
            break
        lines.append(line)
    return textwrap.indent(textwrap.dedent("\n".join(lines)).strip("\n"), "  ")


def _regularisers(spec: families.Spec) -> str:
    """The regulariser fields of an LSTM or GRU spec, with their values; empty for others."""
    if not isinstance(spec, families.regularise.Regularised):
        return ""
    skip = ("zoneout_cell", "projection") if isinstance(spec, families.GRUSpec) else ()
    note = " (the GRU has no cell state and no projection)" if skip else ""
    lines = [f"regularisers (--set model.spec.FIELD=VALUE, all off by default{note}):"]
    for field, meaning in families.regularise.DESCRIPTIONS.items():
        if field in skip:
            continue
        value = getattr(spec, field)
        shown = ",".join(value) if isinstance(value, tuple) else value
        lines.append(f"  {field:18s} {str(shown or 'off'):22s} {meaning}")
    return "\n".join(lines) + "\n"


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not FIELD=VALUE")
    return key.strip(), value.strip()


def cmd_variants(args: argparse.Namespace) -> int:
    if args.name:
        v = variants.lookup(args.name)
        spec = v.spec
        if args.spec:
            fields = [f.name for f in specs.ordered_fields(spec)]
            for key, _ in args.spec:
                if key not in fields:
                    raise ValueError(
                        f"--spec {key}: not a field of {type(spec).__name__}"
                        f"{config_lib.did_you_mean(key, fields)}; its fields: {', '.join(fields)}"
                    )
            spec = spec.replace(**{k: config_lib.parse_literal(t) for k, t in args.spec})
            families.check_sizes(spec, args.input, args.hidden)
        parts = families.param_breakdown(spec, args.input, args.hidden)
        print(f"{v.name}: {v.description}\n  {spec}\n  {v.citation}\n")
        print(f"gates: {_gate_summary(spec)}\n")
        regularisers = _regularisers(spec)
        if regularisers:
            print(regularisers)
        print(f"parameters at input {args.input}, hidden {args.hidden}:")
        for part, count in parts.items():
            print(f"  {part:16s} {count:>10,d}")
        print(f"  {'total':16s} {sum(parts.values()):>10,d}\n")
        print(f"equations ({type(spec).__name__}):\n{_equations(spec)}")
        return 0
    reference = families.param_count(variants.variant("vanilla"), args.input, args.hidden)
    rows = []
    for v in variants.VARIANTS.values():
        count = families.param_count(v.spec, args.input, args.hidden)
        rows.append([v.name, v.description, f"{count:,d}", f"{count / reference:.2f}", v.citation])
    print(
        _table(rows, ["variant", "what differs", "params", "vs vanilla", "citation"])
        + f"\n\nparameters of one layer at input {args.input}, hidden {args.hidden}. "
        "`gatelab variants NAME` shows a variant's spec, gates and equations."
    )
    return 0


# --------------------------------------------------------------------------------------------------
# gatelab train
# --------------------------------------------------------------------------------------------------


def _default_workdir(target: str, config) -> Path:
    path, arg = config_lib.split_target(target)
    name = Path(path).stem + (f"_{arg}" if arg else "")
    return Path("runs") / name / config.model.variant


def cmd_train(args: argparse.Namespace) -> int:
    overrides = args.overrides + args.positional
    config = config_lib.load(args.config, overrides)  # ConfigError -> exit 2, nothing written
    if args.workdir:
        workdir = Path(args.workdir)
    elif os.environ.get("WANDB_SWEEP_ID") and os.environ.get("WANDB_RUN_ID"):
        workdir = Path("runs") / "wandb" / os.environ["WANDB_RUN_ID"]  # one per agent run
    else:
        workdir = _default_workdir(args.config, config)
    # A group of seeds on every core (one CPU device each; nothing compiled or run yet).
    runtime.use_host_cores(len(config.run.seeds) if config.run.devices == 0 else 1)
    from gatelab import train  # heavy imports only once the config is valid

    summaries = train.train_and_evaluate(config, workdir, quiet=args.quiet)
    if args.quiet:
        print(json.dumps({s["seed"]: s["status"] for s in summaries}))
    return 0


# --------------------------------------------------------------------------------------------------
# gatelab sweep / report
# --------------------------------------------------------------------------------------------------


def cmd_sweep(args: argparse.Namespace) -> int:
    from gatelab import sweep

    shard = sweep.parse_shard(args.shard) if args.shard else None
    path, arg = config_lib.split_target(args.config)
    directory = Path(args.workdir or Path("runs") / (Path(path).stem + (f"_{arg}" if arg else "")))
    if args.wandb_sweep is not None:
        import yaml

        from gatelab.wandb_sweep import wandb_sweep_config

        spec = wandb_sweep_config(args.config, args.overrides)
        out = Path(args.wandb_sweep or directory / "wandb_sweep.yaml")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(yaml.safe_dump(spec, sort_keys=False))
        print(f"wrote {out}\n  wandb sweep {out}        # creates the sweep, prints its id")
        print("  wandb agent ENTITY/PROJECT/SWEEP_ID   # on every machine that should run it")
        return 0
    if args.executor != "inline":
        if shard is not None:
            raise config_lib.ConfigError(
                "--shard and --executor local/slurm both split the sweep: give one (each of "
                "the --jobs N jobs runs shard i/N)"
            )
        from gatelab import cluster

        options = cluster.ClusterOptions(
            executor=args.executor,
            jobs=2 if args.jobs is None else args.jobs,
            partition=args.slurm_partition,
            gpus=args.slurm_gpus,
            time_min=24 * 60 if args.slurm_time is None else args.slurm_time,
            cpus=args.slurm_cpus,
            max_running=args.slurm_max_running,
        )
        return cluster.submit(
            args.config,
            directory,
            args.overrides,
            options,
            stage=args.stage,
            max_group=args.max_group,
            test_seeds=args.test_seeds,
            workers=args.workers,
            wait=args.wait,
            quiet=args.quiet,
        )
    given = {
        "--jobs": args.jobs,
        "--slurm-partition": args.slurm_partition or None,
        "--slurm-gpus": args.slurm_gpus or None,
        "--slurm-time": args.slurm_time,
        "--slurm-cpus": args.slurm_cpus or None,
        "--slurm-max-running": args.slurm_max_running or None,
        "--wait/--no-wait": args.wait,
    }
    extra = [flag for flag, value in given.items() if value is not None]
    if extra:
        raise config_lib.ConfigError(
            f"{', '.join(extra)} need --executor local or slurm (inline, the default, runs the "
            "sweep here, as one job)"
        )
    if str(args.workers) == "1":  # every group in this process: its runs on every core
        runtime.use_host_cores()
    return sweep.run_sweep(
        args.config,
        directory,
        args.overrides,
        stage=args.stage,
        shard=shard,
        max_group=args.max_group,
        test_seeds=args.test_seeds,
        workers=args.workers,
        quiet=args.quiet,
    )


def cmd_status(args: argparse.Namespace) -> int:
    from gatelab import status

    return status.main(args.directory, runs=not args.groups, as_json_output=args.json)


def cmd_report(args: argparse.Namespace) -> int:
    from gatelab import report

    if args.wandb_project:
        runs, curves = report.load_wandb(args.wandb_project, args.group)
        out = Path(args.directory)
        path = report.build_report(
            out,
            args.baseline,
            args.metric,
            runs=runs,
            curves=curves,
            out=out / "report",
            wandb=args.wandb,
        )
    else:
        if not Path(args.directory).is_dir():
            raise ValueError(f"{args.directory} is not a directory of runs")
        path = report.build_report(args.directory, args.baseline, args.metric, wandb=args.wandb)
    print(f"report: {path}\nfigures and tables: {path.parent}")
    logged = sorted((path.parent / "wandb").glob("offline-run-*"))
    if logged and args.wandb != "off":
        print(f"W&B (offline): {logged[-1]}  (upload: wandb sync {logged[-1]})")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from gatelab import inspect as inspect_lib

    if args.compare:
        out = inspect_lib.inspect_compare(args.workdir, args.gate, args.split, args.example)
    else:
        out = inspect_lib.inspect_run(args.workdir, args.split, args.examples)
    print(f"inspect: {out}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from gatelab.generate import sample

    print(sample(args.workdir, args.prompt, args.length, args.temperature, args.seed))
    return 0


# --------------------------------------------------------------------------------------------------
# The parser.
# --------------------------------------------------------------------------------------------------


def _add_overrides(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatelab",
        description="Which gates of an LSTM or GRU matter, and why: gated-RNN ablations in JAX.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser(
        "variants",
        help="list the named variants (or show one) with parameter counts",
        description="List every named variant with what differs from its family's base cell, "
        "its citation and its parameter count; with NAME, show its spec, gates and equations.",
    )
    p.add_argument("name", nargs="?", help="a variant name (case does not matter)")
    p.add_argument("--input", type=int, default=32, help="input features D (default: 32)")
    p.add_argument("--hidden", type=int, default=128, help="hidden features H (default: 128)")
    p.add_argument(
        "--spec",
        action="append",
        default=[],
        type=_key_value,
        metavar="FIELD=VALUE",
        help="with NAME: a spec field changed (repeatable), e.g. --spec projection=64 "
        "--spec layer_norm=input,recurrent",
    )
    p.set_defaults(run=cmd_variants)

    p = commands.add_parser(
        "train",
        help="train a config's seeds as one compiled program",
        description="Train every seed of a config together (one compiled program), writing "
        "the record (config.json, metrics.jsonl, summary.json per seed), orbax checkpoints and "
        "an offline W&B run. Running it again in the same workdir resumes from the last "
        "checkpoint.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  gatelab train configs/mnist1d.py --set model.variant=CIFG "
        "--set optim.lr=3e-3 --set run.seeds=0,1,2\n  gatelab train configs/adding.py:quick "
        "--workdir /tmp/adding\n\nkeys for --set:\n  "
        + "\n  ".join(config_lib.override_keys())
        + "\n  model.spec.<field>     a spec field of the variant, e.g. model.spec.peepholes=true"
        "\n  task.args.<name>       a task argument, e.g. task.args.length=200",
    )
    p.add_argument(
        "config", help="a config file, optionally with its argument: configs/mnist1d.py:quick"
    )
    p.add_argument("--workdir", help="where the record goes (default: runs/<config>/<variant>)")
    _add_overrides(p, "override a config key (repeatable); unknown keys and wrong types are errors")
    p.add_argument(
        "positional",
        nargs="*",
        metavar="KEY=VALUE",
        help="more overrides, as W&B agents pass them (${args_no_hyphens})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or report lines")
    p.set_defaults(run=cmd_train)

    p = commands.add_parser(
        "sweep",
        help="run a config's study (its sweep()): groups of runs as compiled programs",
        description="Expand the study of a config file's sweep() into runs (one seed each), "
        "group the runs that share one compiled program, and train each group as one program. "
        "Every run gets its own record under the sweep directory, with DIR/sweep.json listing "
        "them. Running the same command again resumes; failed runs are retried.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  gatelab sweep configs/mnist1d.py:demo --workdir runs/demo\n"
        "  gatelab sweep configs/mnist1d.py --workdir runs/study --stage tune   # lr grid\n"
        "  gatelab sweep configs/mnist1d.py --workdir runs/study --stage test   # best lr, "
        "fresh seeds\n  gatelab sweep configs/mnist1d.py --shard 0/2   # this machine's half\n"
        "  gatelab sweep configs/mnist1d.py:demo --workdir runs/demo --executor local --jobs 2\n"
        "  gatelab sweep configs/mnist1d.py --workdir /shared/study --executor slurm --jobs 20 "
        "--slurm-partition gpu --slurm-gpus 1 --slurm-time 240\n"
        "  gatelab status runs/demo\n  gatelab report runs/demo",
    )
    p.add_argument("config", help="a config file with sweep(), optionally CONFIG:ARG")
    p.add_argument("--workdir", help="the sweep directory (default: runs/<config>[_<arg>])")
    _add_overrides(p, "override a key of every run (repeatable)")
    p.add_argument(
        "--stage",
        choices=["all", "tune", "test"],
        default="all",
        help="all: the study as written; tune: it into DIR/tune; test: each setting's best "
        "learning rate (on validation, from DIR/tune) with fresh seeds into DIR/test",
    )
    p.add_argument("--test-seeds", type=int, default=5, help="seeds of the test stage (default 5)")
    p.add_argument("--shard", metavar="I/N", help="run only the I-th of N deterministic parts")
    p.add_argument(
        "--workers",
        default="auto",
        metavar="N",
        help="train groups in N processes, each pinned to a core (default auto: one per core "
        "on the CPU, one process on an accelerator; 1: in this process)",
    )
    p.add_argument(
        "--max-group", type=int, default=64, help="most runs in one compiled program (default 64)"
    )
    p.add_argument(
        "--wandb-sweep",
        nargs="?",
        const="",
        metavar="FILE",
        help="write the equivalent W&B sweep YAML (default DIR/wandb_sweep.yaml) and stop",
    )
    cluster = p.add_argument_group(
        "jobs (submitit)",
        "Submit the sweep as N jobs, job i running shard i/N; DIR/jobs/ keeps their logs. "
        "Jobs that are preempted or time out are requeued and resume from their checkpoints.",
    )
    cluster.add_argument(
        "--executor",
        choices=["inline", "local", "slurm"],
        default="inline",
        help="inline (default): here, in this process and its --workers; local: --jobs "
        "processes on this machine through submitit, one core each; slurm: a SLURM job array",
    )
    cluster.add_argument("--jobs", type=int, metavar="N", help="how many jobs (default 2)")
    cluster.add_argument("--slurm-partition", default="", metavar="P", help="SLURM partition")
    cluster.add_argument(
        "--slurm-gpus", type=int, default=0, metavar="G", help="GPUs per job (default 0)"
    )
    cluster.add_argument(
        "--slurm-time",
        type=int,
        metavar="MIN",
        help="each job's time limit in minutes (default 1440; also the local executor's)",
    )
    cluster.add_argument(
        "--slurm-cpus", type=int, default=0, metavar="C", help="CPUs per job (default: SLURM's)"
    )
    cluster.add_argument(
        "--slurm-max-running",
        type=int,
        default=0,
        metavar="K",
        help="at most K array tasks at once (default: all)",
    )
    cluster.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="wait for the jobs to finish (default: yes for local, no for slurm)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=cmd_sweep)

    p = commands.add_parser(
        "status",
        help="where a sweep stands: per group and per run, across every job and machine",
        description="Read a sweep directory's records (sweep.json, each run's summary and "
        "metrics, each group's lock) and print per group and per run whether it is done, "
        "running (and in which process), failed (with its error's first line) or pending "
        "(not started, or interrupted: it resumes from its last checkpoint).",
    )
    p.add_argument("directory", help="a sweep directory (or a gatelab train workdir)")
    p.add_argument("--groups", action="store_true", help="only the groups, not every run")
    p.add_argument("--json", action="store_true", help="print JSON instead")
    p.set_defaults(run=cmd_status)

    p = commands.add_parser(
        "report",
        help="tables, significance tests and figures from a sweep's records",
        description="Read the records of a sweep (or of a train workdir) and write DIR/report/: "
        "report.md (per-variant statistics, Welch's t-tests against the baseline with Holm "
        "correction), table.csv, table.tex and figures as PDF and PNG.",
    )
    p.add_argument("directory", help="a sweep directory (or where to write, with --wandb-project)")
    p.add_argument("--baseline", help="the variant to compare with (default: vanilla if present)")
    p.add_argument("--metric", help="the summary key to compare (default: test/<primary metric>)")
    p.add_argument("--wandb-project", metavar="ENTITY/PROJECT", help="read runs from W&B instead")
    p.add_argument("--group", help="with --wandb-project: only this W&B group")
    p.add_argument(
        "--wandb",
        choices=["off", "offline", "online"],
        help="also log the report (table, verdicts, figures, files) as a W&B run of "
        "job_type=report in the study's group (default: the mode of the study's runs)",
    )
    p.set_defaults(run=cmd_report)

    p = commands.add_parser(
        "inspect",
        help="gate heatmaps, histograms and gradient flow of a trained run",
        description="Load a run's best checkpoint, run it on evaluation sequences with gate "
        "capture, and write WORKDIR/inspect/: heatmaps (time x unit) of every gate, the cell "
        "and hidden state per example, gate histograms over the split, the gradient norm "
        "||dL/dh_t|| per step, and gates.md. With --compare, the same gate of every variant of "
        "a sweep side by side.",
    )
    p.add_argument("workdir", help="a run's directory (or a sweep directory with --compare)")
    p.add_argument("--split", choices=["validation", "test"], default="test")
    p.add_argument("--examples", type=int, default=4, help="sequences to draw (default 4)")
    p.add_argument("--compare", action="store_true", help="every variant of a sweep side by side")
    p.add_argument("--gate", default="forget", help="the gate to compare (default forget)")
    p.add_argument("--example", type=int, default=0, help="with --compare: which sequence")
    p.set_defaults(run=cmd_inspect)

    p = commands.add_parser(
        "sample",
        help="generate text from a shakespeare run",
        description="Continue a prompt with a trained character-level model, compiled as one "
        "scan over the generated length; the same seed gives the same text.",
    )
    p.add_argument("workdir", help="a shakespeare run's directory")
    p.add_argument("--prompt", required=True, help='the text to continue, e.g. "ROMEO:"')
    p.add_argument("--length", type=int, default=400, help="characters to generate (400)")
    p.add_argument("--temperature", type=float, default=0.8, help="softmax temperature (0.8)")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed (0)")
    p.set_defaults(run=cmd_sample)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parse_args`` with a suggestion for a mistyped command or flag."""
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if argv and not argv[0].startswith("-") and argv[0] not in commands.choices:
        names = list(commands.choices)
        parser.error(
            f"unknown command {argv[0]!r}{config_lib.did_you_mean(argv[0], names)}; "
            f"commands: {', '.join(names)}"
        )
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = commands.choices[args.command]
        flags = [f for action in command._actions for f in action.option_strings]
        flag = next((u.split("=")[0] for u in unknown if u.startswith("-")), None)
        if flag is None:
            command.error(f"unrecognized arguments: {' '.join(unknown)}")
        suggestion = config_lib.did_you_mean(flag, flags)
        command.error(f"unknown flag {flag}{suggestion}; see gatelab {args.command} --help")
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = _parse(parser, sys.argv[1:] if argv is None else list(argv))
    runtime.tune_allocator()
    runtime.configure_jax()
    # gatelab's warnings (a damaged checkpoint set aside, W&B offline) read as its errors do.
    warnings.formatwarning = lambda message, *_: f"gatelab {args.command}: warning: {message}\n"
    try:
        return args.run(args)
    except Exception as error:
        where = records.disk_full(error)
        if where is not None:  # the machine's fault, not the input's: exit 1
            print(
                f"gatelab {args.command}: error: the disk is full (no space left writing {where}). "
                "Everything written before is intact: free some space and run the same command "
                "again to resume.",
                file=sys.stderr,
            )
            return 1
        if isinstance(error, records.CheckpointError):
            print(f"gatelab {args.command}: error: {error}", file=sys.stderr)
            return 1
        if isinstance(error, (ValueError, FileNotFoundError)):  # bad input: exit 2 like argparse
            print(f"gatelab {args.command}: error: {error}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
