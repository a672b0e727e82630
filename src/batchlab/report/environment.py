"""Where a study ran: the versions, the device and the source commit a reader needs to rerun it.

``environment()`` is recorded by ``batchlab run`` into the results' meta (key ``environment``); a
report of results recorded without it shows the environment the report was written in, and says so.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path
from typing import Any


def _commit() -> str | None:
    """The git commit of the checkout batchlab is imported from (with ``+dirty`` for local changes), if any."""
    here = Path(__file__).resolve().parent
    try:
        root = subprocess.run(["git", "-C", str(here), "rev-parse", "--show-toplevel"], capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()
        if not (Path(root) / "src" / "batchlab").is_dir():
            return None  # some other repository around an installed copy
        commit = subprocess.run(["git", "-C", root, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def environment() -> dict[str, Any]:
    """batchlab, Python, torch and numpy versions, the machine and its accelerator, the git commit."""
    import numpy
    import torch

    from batchlab import __version__

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"batchlab": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
            "numpy": numpy.__version__, "platform": platform.platform(terse=True),
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "gpu": gpu, "commit": _commit()}
