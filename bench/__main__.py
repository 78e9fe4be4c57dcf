"""``python -m bench`` (``make bench``): run every benchmark, print the table, write JSON and PNG.

``--help`` lists the options (``--quick`` is a smoke run of well under a minute). Progress lines go
to stderr as it runs; the table goes to stdout at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.config import BenchConfig
from bench.runner import run


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the benchmarks and return 0 (1 when a half could not be measured)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (seconds, tiny sizes)")
    parser.add_argument("--only", choices=("receiver", "program", "drain", "stores"), help="run only one part")
    parser.add_argument("--results", type=Path, default=None, help="output folder (default bench/results)")
    parser.add_argument("--rate-seconds", type=float, default=None, help="seconds per offered rate")
    parser.add_argument("--flat-seconds", type=float, default=None, help="seconds of flat-out load per server")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile of the receiver")
    parser.add_argument("--no-wrk", action="store_true", help="flat-out load with the asyncio generator instead of wrk")
    parser.add_argument(
        "--program-repeats",
        type=int,
        choices=range(1, 11),
        metavar="1..10",
        default=None,
        help="runs per program and rule count, best one reported (default 5)",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    overrides: dict[str, object] = {}
    if args.results is not None:
        overrides["results_dir"] = args.results
    if args.rate_seconds is not None:
        overrides["rate_seconds"] = args.rate_seconds
    if args.flat_seconds is not None:
        overrides["flat_seconds"] = args.flat_seconds
    if args.no_wrk:
        overrides["use_wrk"] = False
    if args.no_profile:
        overrides["profile_seconds"] = 0.0
    if args.program_repeats is not None:
        overrides["program_repeats"] = args.program_repeats
    if args.only:
        overrides["receiver"] = args.only == "receiver"
        overrides["program"] = args.only == "program"
        overrides["drain"] = args.only == "drain"
        overrides["stores"] = args.only == "stores"
    config = BenchConfig.quick(**overrides) if args.quick else BenchConfig.model_validate(overrides)

    started = time.monotonic()

    def progress(message: str) -> None:
        sys.stderr.write(f"[bench {time.monotonic() - started:6.1f}s] {message}\n")
        sys.stderr.flush()

    return run(config, progress)


if __name__ == "__main__":
    raise SystemExit(main())
