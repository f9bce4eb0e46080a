"""The one exception type for mistakes a user can fix (bad flag, bad file, missing package).

Entry points catch it, print its one-line message and exit 2; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem the user can fix; the message says what to do."""
