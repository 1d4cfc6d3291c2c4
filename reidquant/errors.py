"""The one exception type that means "the user gave us something wrong", and what becomes of it.

The command line and every rule script run their work through ``run_for_user``: a
``ReidQuantError`` becomes a single line on stderr and a non-zero exit; everything else is a
bug and keeps its traceback.
"""

import sys


class ReidQuantError(Exception):
    """A problem with the user's input, stated in one line that names what and where."""


def user_message(error: ReidQuantError) -> str:
    """One line for the user, also when the error was raised inside a DataLoader worker."""
    text = str(error)
    # torch re-raises a worker's error as the same type, its message the worker's traceback
    if "Original Traceback" in text:
        for line in reversed(text.splitlines()):
            if "ReidQuantError:" in line:
                return line.split("ReidQuantError:", 1)[1].strip()
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


# Where in its own sources a runtime raised, not why: OpenVINO opens every message with these.
_LOCATION = ("Exception from src/", "Check '")


def cause(error: Exception) -> str:
    """The line of a third-party exception's message that says what went wrong (at most 200
    characters), for a one-line message of our own."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith(_LOCATION)] or lines
    return said[0][:200] if said else type(error).__name__


def run_for_user(function, *args, **kwargs):
    """Call ``function``; a user error becomes one line on stderr and exit status 1."""
    try:
        return function(*args, **kwargs)
    except KeyboardInterrupt:
        print("reidquant: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except ReidQuantError as error:
        print(f"reidquant: error: {user_message(error)}", file=sys.stderr)
        raise SystemExit(1) from None
