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


def require_readable(key: str, path) -> str:
    """The path of a data file a config names, or a RunError line saying why it cannot be read."""
    import os

    path = os.fspath(path)
    if not os.path.exists(path):
        raise RunError(f"{key}={path}: no such file")
    if os.path.isdir(path):
        raise RunError(f"{key}={path}: is a folder; a file is needed")
    if not os.access(path, os.R_OK):
        raise RunError(f"{key}={path}: not readable (permission denied)")
    return path
