"""What every rule script does around its work: tee output into the rule's log, one-line errors.

Rule scripts import this module first: from then on a Ctrl-C, even during the heavy imports
that follow, ends the job with one line instead of a KeyboardInterrupt traceback.
"""

from __future__ import annotations

import contextlib
import sys
import traceback

from reidquant.errors import ReidQuantError, run_for_user


def _quiet_interrupt(kind, value, traceback):
    if issubclass(kind, KeyboardInterrupt):
        print("reidquant: interrupted", file=sys.stderr)
    else:
        sys.__excepthook__(kind, value, traceback)


sys.excepthook = _quiet_interrupt  # only rule scripts import this module


class _Tee:
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for stream in self.streams:
            stream.write(text)
            stream.flush()
        return len(text)

    def flush(self):
        for stream in self.streams:
            stream.flush()

    def isatty(self):
        return False


def run_rule(log_path: str, function, *args, **kwargs):
    """Run ``function`` with stdout and stderr copied into ``log_path`` (progress bars included).

    A user error caused by another exception (a runtime's conversion or calibration failing)
    is one line on the terminal; the log also keeps the traceback of what caused it.
    """
    with open(log_path, "w") as log, contextlib.redirect_stdout(_Tee(sys.__stdout__, log)), \
            contextlib.redirect_stderr(_Tee(sys.__stderr__, log)):
        return run_for_user(_keeping_causes(function, log), *args, **kwargs)


def _keeping_causes(function, log):
    """``function``, writing into the log the traceback of a bug (any error but a user error)
    and of whatever caused a user error."""
    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ReidQuantError as error:
            if error.__cause__ is not None:
                log.write("".join(traceback.format_exception(error)))
                log.flush()
            raise
        except Exception as error:
            log.write("".join(traceback.format_exception(error)))
            log.flush()
            raise

    return run
