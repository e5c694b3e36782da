"""Safe outputs: snn2chip never deletes or replaces anything it did not write, and an output
is either complete under the name the user gave or not there at all.

- A **folder** output (``compile -o BUILD``, ``verify -o DIR``) is filled under a temporary
  sibling name and renamed into place. An existing folder is replaced only when it is empty, or
  a previous output of the same kind: it holds the marker file :data:`MARKER`, which lists what
  snn2chip wrote there, and nothing else. The current folder, a folder above it, and a folder
  that is or holds an input are refused.
- A **file** output (``run -o``, ``--update-golden``, ``convert -o``) is written under a
  temporary sibling name and renamed to exactly its final name. An existing file is replaced
  only when it is recognisably an earlier output of the same kind; an input file never is.

Every check runs before any work (:func:`check_dir`, :func:`check_file`) and again when the
output is committed. Problems are :class:`~snn2chip.errors.ModelError` naming the output path;
folders created for an output that then failed are removed again. Input files are checked
to exist by :func:`require_file` (``no such file``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from snn2chip.errors import ModelError

MARKER = ".snn2chip-output"
MARKER_FORMAT = "snn2chip-output"
MARKER_VERSION = 1


def require_file(path: str | Path, what: str = "", hint: str = "") -> Path:
    """``path`` as a :class:`Path` when it names an existing file, else a :class:`ModelError`
    naming it as given: ``no such file``, ``no such WHAT file``, with `` (HINT)`` when given."""
    if not Path(path).is_file():
        raise ModelError(f"no such {what + ' ' if what else ''}file" + (f" ({hint})" if hint else ""), file=str(path))
    return Path(path)


def _fail(path, problem: str) -> ModelError:
    return ModelError(problem, file=str(path))


def _os_problem(e: OSError) -> str:
    return f"cannot be written: {e.strerror or type(e).__name__}" + (f" ({e.filename})" if e.filename else "")


def _is_within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def _check_name(text: str) -> None:
    if not text.strip():
        raise ModelError("the output name is empty", option="-o")


def _check_inputs(path: Path, text: str, inputs: Iterable, folder: bool) -> None:
    target = path.resolve()
    for source in inputs:
        if source is None or not Path(source).exists():
            continue
        resolved = Path(source).resolve()
        if (folder and _is_within(resolved, target)) or resolved == target:
            what = "is" if resolved == target else "holds"
            raise _fail(text, f"{what} the input {source}: the output would replace it; choose another output name")


def _missing_parents(path: Path) -> list[Path]:
    """The parent folders of ``path`` that do not exist, innermost first."""
    missing = []
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    return missing


def _check_creatable(path: Path, text: str) -> None:
    """The nearest existing ancestor of ``path`` must be a writable folder."""
    missing = _missing_parents(path)
    parent = missing[-1].parent if missing else path.parent
    if not parent.is_dir():
        raise _fail(text, f"cannot be created: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _fail(text, f"cannot be created: no permission to write in {parent}")


def read_marker(folder: Path) -> dict | None:
    """The marker of a snn2chip output folder, or None when it has none (or a broken one)."""
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("format") != MARKER_FORMAT:
        return None
    files = marker.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return marker


def check_dir(out: str | Path, kind: str, inputs: Iterable = ()) -> Path:
    """``out`` as a folder output of ``kind`` (e.g. 'build'), checked as the module says."""
    text = str(out)
    _check_name(text)
    path = Path(out)
    cwd = Path.cwd().resolve()
    if _is_within(cwd, path.resolve()):
        raise _fail(text, "is the current folder or a folder above it: name a new folder for the output")
    _check_inputs(path, text, inputs, folder=True)
    if not (path.exists() or path.is_symlink()):
        _check_creatable(path, text)
        return path
    if path.is_symlink() or not path.is_dir():
        raise _fail(text, "exists and is not a folder: choose another output name")
    entries = sorted(os.listdir(path))
    if not entries:
        return path
    marker = read_marker(path)
    if marker is None:
        raise _fail(text, f"exists and is not a snn2chip {kind} folder (no {MARKER} file): snn2chip replaces only its "
                          "own outputs; choose a new folder or remove this one")
    if marker.get("kind") != kind:
        raise _fail(text, f"is a snn2chip {marker.get('kind')} folder, not a {kind} folder: choose another output name")
    ours = set(marker["files"]) | {MARKER}
    foreign = [e for e in entries if e not in ours or not (path / e).is_file() or (path / e).is_symlink()]
    if foreign:
        raise _fail(text, f"holds files snn2chip did not write ({', '.join(foreign[:3])}"
                          f"{', ...' if len(foreign) > 3 else ''}): move them away or choose a new folder")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise _fail(text, f"cannot be replaced: no permission to write in {path.parent}")
    return path


@contextlib.contextmanager
def _parents_made(path: Path, text: str) -> Iterator[None]:
    """Create the missing parent folders of ``path``; remove those left empty on failure."""
    made = _missing_parents(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _fail(text, _os_problem(e)) from None
    try:
        yield
    except BaseException:
        for folder in made:  # innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


@contextlib.contextmanager
def atomic_dir(out: str | Path, kind: str, inputs: Iterable = ()) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; when the block ends normally it becomes ``out``
    (with a :data:`MARKER` listing its files), replacing a previous output of the same kind.
    When the block raises, nothing is left behind."""
    inputs = list(inputs)
    path = check_dir(out, kind, inputs)
    text = str(out)
    with _parents_made(path, text):
        try:
            tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
        except OSError as e:
            raise _fail(text, _os_problem(e)) from None
        try:
            yield tmp
            files = sorted(p.name for p in tmp.iterdir())
            (tmp / MARKER).write_text(json.dumps({"format": MARKER_FORMAT, "version": MARKER_VERSION, "kind": kind,
                                                  "files": files}) + "\n")
            check_dir(out, kind, inputs)
            _swap_in(tmp, path)
        except OSError as e:
            raise _fail(text, _os_problem(e)) from None
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path``; a checked previous output there is moved aside first and
    removed after (or put back if the rename fails)."""
    if not path.exists():
        os.rename(tmp, path)
        return
    aside = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old."))
    os.rename(path, aside / "previous")
    try:
        os.rename(tmp, path)
    except OSError:
        os.rename(aside / "previous", path)
        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def check_file(out: str | Path, inputs: Iterable = (), suffix: str = "",
               ours: Callable[[Path], bool] | None = None) -> Path:
    """The final path of a file output (``suffix`` appended unless ``out`` ends with it),
    checked as the module says; ``ours(path)`` tells whether an existing file is an earlier
    output of the same kind (None: an existing file is never replaced)."""
    text = str(out)
    _check_name(text)
    if suffix and not text.endswith(suffix):
        text += suffix
    path = Path(text)
    if path.is_dir():
        raise _fail(text, "is a folder: name a file for the output")
    _check_inputs(path, text, inputs, folder=False)
    if path.exists() or path.is_symlink():
        if path.is_symlink() or not path.is_file() or ours is None or not ours(path):
            raise _fail(text, "exists and was not written by snn2chip: snn2chip replaces only its own outputs; "
                              "choose another name or remove the file")
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise _fail(text, f"cannot be replaced: no permission to write in {path.parent}")
    else:
        _check_creatable(path, text)
    return path


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path (same suffix) to write to exactly; when the block ends
    normally it is renamed to ``path`` (checked beforehand with :func:`check_file`); when it
    raises, it is removed and nothing is left behind."""
    path = Path(path)
    text = str(path)
    with _parents_made(path, text):
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
            os.close(fd)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; an output is an ordinary file
        except OSError as e:
            raise _fail(text, _os_problem(e)) from None
        try:
            yield Path(tmp)
            if os.path.getsize(tmp) == 0:
                raise RuntimeError(f"the writer of {text} wrote nothing to {tmp}")
            os.replace(tmp, path)
        except OSError as e:
            raise _fail(text, _os_problem(e)) from None
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as a compressed ``.npz`` to exactly ``path`` (atomically)."""
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def npz_json(path: Path, key: str) -> dict | None:
    """The JSON object stored as a string under ``key`` in an ``.npz`` file, or None (not an npz
    archive, no such key, not a JSON object)."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            return None
        with loaded:
            if key not in loaded.files:
                return None
            value = loaded[key]
        result = json.loads(str(value)) if value.dtype.kind in "US" and value.ndim == 0 else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    return result if isinstance(result, dict) else None
