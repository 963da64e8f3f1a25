"""Command line: ``rnnbook build`` (also ``python -m rnnbook build``)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EPILOG = """\
parameters: preset < -f files (in order) < -p overrides.  Values are parsed as
data, never as code: -p seq_len=20  -p learning_rate=1e-3  -p activations=[tanh,relu]
(or activations=tanh,relu)  -p lag=None.  `rnnbook build --list-params` lists them.
"""


#: The choices of ``--executor`` (``rnnbook.sweeps.EXECUTORS``, not imported here: it loads pandas).
EXECUTORS = ("local", "ray")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def make_parser() -> argparse.ArgumentParser:
    from rnnbook import __version__

    parser = argparse.ArgumentParser(prog="rnnbook", description="Build the rnnbook Jupyter Book.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser(
        "build", help="execute the chapters with parameters and build the HTML",
        description="Execute every chapter in _toc.yml with papermill (cached), then build the "
                    "HTML with Jupyter Book into _build/html, strict.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("--preset", default="default", help="parameter preset: presets/NAME.yaml (default: %(default)s)")
    b.add_argument("-f", "--parameters-file", dest="files", action="append", default=[], metavar="FILE",
                   help="YAML file of parameters (repeatable, later files win)")
    b.add_argument("-p", "--parameter", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                   help="set one parameter (repeatable, wins over preset and files)")
    b.add_argument("--force", action="store_true", help="re-execute every chapter, ignoring the cache")
    b.add_argument("--list-params", action="store_true", help="print every parameter and exit")
    b.add_argument("--root", type=Path, default=None,
                   help="the book's root (default: the directory holding _toc.yml at or above the cwd)")
    b.add_argument("--build-dir", type=Path, default=None, help="output directory, named _build (default: ROOT/_build)")
    b.add_argument("--no-progress", action="store_true",
                   help="no progress bars (the default when the output is not a terminal)")
    b.add_argument("-v", "--verbose", action="store_true", help="show Jupyter Book's full log")
    b.add_argument("--no-html", action="store_true", help="execute (and cache) the chapters only")
    b.add_argument("--pdf", action="store_true",
                   help="also print the book to _build/pdf/rnnbook-<version>.pdf with headless Chromium "
                        "(and put it beside the site's pages)")
    b.add_argument("--only", action="append", default=[], metavar="CHAPTERS",
                   help="execute only these chapters (comma-separated file stems, e.g. relu,clipping; "
                        "repeatable); the others keep their executed notebook for the current parameters "
                        "if one is cached, else they show a note that they were not built")
    b.add_argument("--dry-run", action="store_true",
                   help="print the chapters, training runs per chapter, runs already cached and the "
                        "estimated run-hours, then exit without running anything")
    b.add_argument("--executor", default="local", choices=EXECUTORS,
                   help="where the chapters' training runs execute: local (worker processes on this machine) "
                        "or ray (one Ray task per run) (default: %(default)s)")
    b.add_argument("--recompute", action="store_true",
                   help="compute the reference runs missing from the shipped records (data/reference) and append "
                        "them there, in part files that can be committed as they grow; resumable")
    b.add_argument("--reference-dir", type=Path, default=None, metavar="DIR",
                   help="the reference records' folder (default: data/reference; RNNBOOK_REFERENCE)")
    b.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="with --executor local: worker processes running a sweep's runs side by side, one "
                        "thread each (default: one per core; 1: one run after the other in the kernel)")
    b.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="with --executor ray: join this cluster (auto, or ray://host:10001); "
                        "default: start a Ray on this machine for the build")
    b.add_argument("--ray-cpus-per-run", type=float, default=1.0, metavar="N",
                   help="with --executor ray: CPUs reserved per run (default: %(default)s)")
    from rnnbook.book.values import add_parser as add_diff_parser

    add_diff_parser(sub)  # rnnbook diff OLD NEW
    return parser


def _interactive() -> bool:
    """Progress bars only on a terminal: the output (stdout) and where the bars are drawn (stderr)."""
    return all(getattr(stream, "isatty", lambda: False)() for stream in (sys.stdout, sys.stderr))


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if args.command == "diff":
        from rnnbook.book import values

        return values.main(args)
    from rnnbook import repo_root
    from rnnbook.book.build import BuildError, Options, build, list_params
    from rnnbook.book.params import ParamError

    root = (args.root or repo_root()).resolve()
    if not (root / "_toc.yml").exists():
        print(f"rnnbook: error: no _toc.yml in {root} (use --root)", file=sys.stderr)
        return 2
    try:
        if args.list_params:
            print(list_params(root))
            return 0
        if args.workers is not None:  # to the kernels, through sweeps.executor_env (RNNBOOK_WORKERS)
            os.environ["RNNBOOK_WORKERS"] = str(args.workers)
        if args.recompute:  # to the kernels: computed runs are appended to the shipped records
            from rnnbook import reference

            os.environ[reference.MODE_ENV] = "write"
        if args.reference_dir is not None:
            from rnnbook import reference

            os.environ[reference.STORE_ENV] = str(args.reference_dir.resolve())
        return build(Options(
            root=root, preset=args.preset, files=args.files, overrides=args.overrides,
            force=args.force, build_dir=args.build_dir, progress=not args.no_progress and _interactive(),
            html=not args.no_html, pdf=args.pdf, verbose=args.verbose, only=args.only, dry_run=args.dry_run,
            executor=args.executor, ray_address=args.ray_address, ray_cpus_per_run=args.ray_cpus_per_run,
        ))
    except ParamError as exc:
        print(f"rnnbook: parameter error: {exc}", file=sys.stderr)
        return 2
    except BuildError as exc:
        print(f"rnnbook: build failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rnnbook: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
