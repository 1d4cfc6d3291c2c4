"""The one exception type that means "the user gave us something wrong".

The command line turns it into a single line on stderr and a non-zero exit;
everything else is a bug and keeps its traceback.
"""


class ReidQuantError(Exception):
    """A problem with the user's input, stated in one line that names what and where."""
