"""Build step: copy notebooks/*.ipynb and params/*.yaml into the package (hrl_core/_data/),
so an installed wheel runs `hrl grid`, `study`, `plot` and `demo` without the repository.
Everything else about the package is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildWithResources(build_py):
    def run(self):
        super().run()
        for sub, pattern in (("notebooks", "*.ipynb"), ("params", "*.yaml")):
            dest = Path(self.build_lib) / "hrl_core" / "_data" / sub
            dest.mkdir(parents=True, exist_ok=True)
            for src in sorted((ROOT / sub).glob(pattern)):
                shutil.copy2(src, dest / src.name)


setup(cmdclass={"build_py": BuildWithResources})
