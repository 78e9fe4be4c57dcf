"""``secure-export``: one thin dispatcher over the receiver's and the Pulumi program's commands.

Each half is imported only when its command runs, so the receiver's container image needs no
Pulumi and the Pulumi program needs no web stack.
"""

from __future__ import annotations

import sys

_RECEIVER_COMMANDS = ("serve", "demo", "work-items", "cmdb", "trace", "replay", "discard")
_PLAN_COMMAND = "plan"

_USAGE = """usage: secure-export COMMAND [OPTIONS]

commands:
  serve [--host H] [--port P]        run the receiver (config from SECURE_EXPORT_* variables)
  demo                               the whole path on this machine, no cloud
  work-items [--json] [--db PATH|URL]
                                     list the embedded backend's work items
  work-items resolve|close NUMBER --note TEXT
                                     resolve or close an embedded work item
  cmdb [--json] [--db PATH|URL]      list the embedded backend's configuration items
  trace ALERT_ID [--db PATH|URL] [--json]
                                     every delivery of an alert and the work item it became
  replay (--id N ... | --all) [--db PATH|URL]
                                     parked deliveries back to pending (receiver may run)
  discard --id N ... --reason TEXT [--db PATH|URL]
                                     give up on parked deliveries, kept with who and why
  plan --stack NAME [--json] [--policy]
                                     evaluate the Pulumi program offline and print its resources
  diff --stack NAME [--base REV] [--json|--markdown] [--exit-code]
                                     offline: what would change since git revision REV (default HEAD)

  --version                          print the version and exit

Run 'secure-export COMMAND --help' for a command's options.
"""


def version() -> str:
    """The installed distribution's version (the source tree's when run uninstalled)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("secure-export")
    except PackageNotFoundError:
        return "0+unknown"


def main(argv: list[str] | None = None) -> int:
    """Run the command named by the first argument and return its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(_USAGE)
        return 0 if args else 2
    if args[0] in ("--version", "-V", "version"):
        sys.stdout.write(f"secure-export {version()}\n")
        return 0
    command, rest = args[0], args[1:]
    if command == "demo":
        from receiver.demo.run import main as demo_main

        return demo_main(rest)
    if command in _RECEIVER_COMMANDS:
        from receiver.cli.commands import main as receiver_main

        return receiver_main(command, rest)
    if command == _PLAN_COMMAND:
        from secure_export.plan.cli import main as plan_main

        return plan_main(rest)
    if command == "diff":
        from secure_export.review.cli import main as diff_main

        return diff_main(rest)
    import difflib

    close = difflib.get_close_matches(command, [*_RECEIVER_COMMANDS, _PLAN_COMMAND, "diff"], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    sys.stderr.write(f"secure-export: unknown command {command!r}{hint}\n\n{_USAGE}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
