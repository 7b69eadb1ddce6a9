"""setup.cfg holds the configuration; this file only adds the autoload .pth, which setuptools has no option for.

``superb_redundancy_autoload.pth`` lands at the root of site-packages (regular and editable installs), so every
interpreter runs ``_superb_redundancy_autoload.install()`` at start (see that module; docs/s3prl.md, "Autoload").
"""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_NAME = "superb_redundancy_autoload.pth"
# site.py executes .pth lines that start with "import", in file-name order: this name sorts after
# "__editable__*.pth", so in an editable install the editable finder is in place when this line runs.
PTH_LINE = "import _superb_redundancy_autoload; _superb_redundancy_autoload.install()\n"


class build_py_with_pth(build_py):
    """build_py that also writes the .pth at the root of the (editable) wheel."""

    def run(self) -> None:
        super().run()
        # editable_wheel packs what is installed into install_lib (its unpacked wheel), not build_lib
        root = self.get_finalized_command("install").install_lib if self.editable_mode else self.build_lib
        self.mkpath(root)
        with open(os.path.join(root, PTH_NAME), "w", encoding="utf-8") as file:
            file.write(PTH_LINE)

    def get_outputs(self, include_bytecode: bool = True) -> list:
        outputs = super().get_outputs(include_bytecode)
        return outputs if self.editable_mode else [*outputs, os.path.join(self.build_lib, PTH_NAME)]


setup(cmdclass={"build_py": build_py_with_pth})
