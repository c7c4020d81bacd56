"""The two kinds of failure a user can see, each printed as one line by the CLI shells.

UsageError: the request itself is wrong (a key, a value, a name) -> exit code 2, nothing trained, nothing written.
RunError: the request was fine but the run could not be done (a missing file, no GPU) -> exit code 1.
"""


class RegbenchError(Exception):
    exit_code = 1


class UsageError(RegbenchError):
    exit_code = 2


class RunError(RegbenchError):
    exit_code = 1


def unknown_name(key: str, name: str, known) -> UsageError:
    return UsageError(f"{key}: unknown name {name!r}; known: {', '.join(sorted(known))}")
