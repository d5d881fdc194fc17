"""One error type for everything a user can fix, and the wrapper that prints it as one line."""
import os
import sys


class PipelineError(Exception):
    """A problem with the user's input, params or environment, told in one line."""


def first_line(err):
    """An exception as one line: its message's first line, or its type where it has no message."""
    return str(err).splitlines()[0] if str(err).strip() else type(err).__name__


def run_stage(main):
    """Run a stage's ``main()``; report a PipelineError as ``error: …`` and exit 1.

    Set VALENCE_DEBUG=1 to get the full traceback instead.
    """
    try:
        main()
    except PipelineError as err:
        if os.environ.get("VALENCE_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
