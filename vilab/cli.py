"""``vilab``: the command-line entry point, one subcommand per case study."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import signal
import sys
import threading
import warnings
from importlib import metadata

from vilab.cache import using_the_cache
from vilab.flags import join_negative_values

__all__ = ["build_parser", "main"]

# name -> (the module with add_arguments(parser) and the description --help shows, the module
# with run(args), the one-line help). Building the parser imports only the first kind, which
# import no torch, Pyro, matplotlib, ArviZ, pyarrow, scipy or torchvision: `vilab --help`
# answers at once (tests/vilab/test_startup.py holds the budget); run(args) imports the rest.
_COMMANDS = {
    "earthquake": (
        "vilab.earthquake.flags",
        "vilab.earthquake.run",
        "earthquake mixture: closed-form CAVI beside Pyro SVI on a catalog",
    ),
    "catalog": (
        "vilab.catalog.flags",
        "vilab.catalog.run",
        "earthquake catalogs as Parquet: convert a CSV, or simulate one of any size",
    ),
    "expgauss": (
        "vilab.expgauss.flags",
        "vilab.expgauss.run",
        "exponential-Gaussian model: SVI paths on the closed-form ELBO, exact log p(x)",
    ),
    "vae": (
        "vilab.vae.flags",
        "vilab.vae.run",
        "Bernoulli VAE on MNIST by Pyro SVI: test -ELBO, importance-weighted log-likelihood",
    ),
    "reparam": (
        "vilab.reparam.flags",
        "vilab.reparam.run",
        "reparameterised samplers (inverse-CDF exponential, Gumbel-max/softmax) vs torch's",
    ),
    "ring": (
        "vilab.ring.flags",
        "vilab.ring.run",
        "ring mixture: EM against the truth, the two ELBO choices and their K -> inf limits, KL",
    ),
    "gradvar": (
        "vilab.gradvar.flags",
        "vilab.gradvar.run",
        "gradient variance and SNR of each estimator (Trace_ELBO, analytic KL, STL)",
    ),
    "cache": (
        "vilab.cache",
        "vilab.cache",
        "where compiled SVI steps are kept between runs: show its size, or clear it",
    ),
}


_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc):`~?([^`]+)`")


def plain_text(doc: str) -> str:
    """A module docstring as ``--help`` shows it: reST roles and double backticks removed
    (``:func:`x.y``` and ````x```` read as ``x.y`` and ``x``)."""
    return _ROLE.sub(r"\1", doc).replace("``", "")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vilab",
        description="Variational-inference case studies in Pyro, checked against closed forms.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {metadata.version('pyro-vi-lab')}"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (flags_name, run_name, help_text) in _COMMANDS.items():
        flags = importlib.import_module(flags_name)
        p = sub.add_parser(
            name,
            help=help_text,
            description=plain_text(flags.__doc__),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        flags.add_arguments(p)
        p.set_defaults(run_module=run_name)
    return parser


def _one_line_warning(command: str):
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"vilab {command}: warning: {message}", file=sys.stderr if file is None else file)

    return show


class _Signals:
    """Ctrl-C (SIGINT) and SIGTERM (a cluster's scheduler, ``kill``, the torchrun launcher
    stopping its workers) end a command alike: raised as KeyboardInterrupt where the program
    is, so files stay whole and one line is printed, with the shell's code 130 or 143. Which
    signal came is recorded, so an interrupt that a C++ callback re-raised as another
    exception (the TorchScript interpreter wraps it in a RuntimeError) still ends as one."""

    received: int | None = None

    @classmethod
    def on_signal(cls, signum, frame) -> None:
        cls.received = signum
        raise KeyboardInterrupt


def _stopped(parser: argparse.ArgumentParser, command: str, err: BaseException) -> None:
    """Exit with one line for a Ctrl-C or SIGTERM; ``err`` may carry what the run left."""
    reason = f" {err}" if isinstance(err, KeyboardInterrupt) and str(err) else ""
    if _Signals.received == signal.SIGTERM:
        parser.exit(143, f"\nvilab {command}: terminated (SIGTERM){reason}\n")
    parser.exit(130, f"\nvilab {command}: interrupted{reason}\n")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_negative_values(sys.argv[1:] if argv is None else list(argv)))
    run = importlib.import_module(args.run_module).run
    import torch  # (after parsing: --help and a bad flag answer without it)

    from vilab.threads import choose_threads

    threads = torch.get_num_threads()
    torch.set_num_threads(getattr(args, "threads", None) or choose_threads(threads))
    _Signals.received = None
    installed = threading.current_thread() is threading.main_thread()  # only there it can be
    previous = {}
    if installed:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, _Signals.on_signal)
    try:
        with warnings.catch_warnings():  # a warning reads as one line, not file:line + source
            warnings.showwarning = _one_line_warning(args.command)
            with using_the_cache():
                run(args)
    except KeyboardInterrupt as err:
        _stopped(parser, args.command, err)
    except Exception as err:
        if _Signals.received is not None:  # an interrupt that came back as another exception
            _stopped(parser, args.command, err)
        if isinstance(err, (ValueError, FloatingPointError)):
            parser.exit(2, f"vilab {args.command}: error: {err}\n")
        if isinstance(err, OSError) and not isinstance(err, BrokenPipeError):  # a full disk...
            where = f"{err.filename!r}: " if err.filename else ""
            parser.exit(1, f"vilab {args.command}: error: {where}{err.strerror or err}\n")
        if not isinstance(err, BrokenPipeError):
            raise
        # e.g. `vilab ... | head`: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:  # a caller in the same process (a test, a notebook) keeps its own settings
        torch.set_num_threads(threads)
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
