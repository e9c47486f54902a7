"""Mirror a services/ tree into a persistent staging dir and compile only changed files to checked-hash
.pyc. Python's .pyc bytes are not reproducible run to run, so unchanged files keep their old .pyc: the
image's code layer then stays cached until a source really changes.
Usage: python3 stage_bytecode.py SRC DEST"""
import filecmp
import os
import py_compile
import shutil
import sys
from pathlib import Path


def sync(src: Path, dest: Path) -> int:
    """Copy new/changed files from src to dest, compile changed .py, drop what src no longer has."""
    changed = 0
    wanted = set()
    for path in src.rglob("*"):
        if "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        rel = path.relative_to(src)
        wanted.add(rel)
        target = dest / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        if target.exists() and filecmp.cmp(path, target, shallow=False):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        if target.suffix == ".py":
            py_compile.compile(str(target), doraise=True,
                               invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
        changed += 1
    for path in sorted(dest.rglob("*"), reverse=True):
        rel = path.relative_to(dest)
        if "__pycache__" in rel.parts:
            source = dest / Path(*rel.parts[:-2]) / (path.name.split(".")[0] + ".py") if path.is_file() else None
            if source is not None and not source.exists():
                path.unlink()
            continue
        if rel not in wanted:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in dest.rglob("*"):   # fixed mtimes: the build cache keys on content only
        os.utime(path, (1, 1), follow_symlinks=False)
    return changed


if __name__ == "__main__":
    print(sync(Path(sys.argv[1]), Path(sys.argv[2])))
