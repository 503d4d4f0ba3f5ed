"""The packages install with pip on Debian 12 without network: client/python (axon_client)
and sdk/python (axon_worker) go into a temporary venv made with --system-site-packages (so
the distribution's setuptools and wheel build them, --no-build-isolation --no-index), and
import from there, outside the source tree.

Uses /usr/bin/python3 (Debian's; AXON_SYSTEM_PYTHON overrides). The sources are copied first,
so the build leaves nothing in the tree. AXON_WORKER_LIB names the library axon_worker loads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PYTHON = os.environ.get("AXON_SYSTEM_PYTHON", "/usr/bin/python3")


class InstallTest(unittest.TestCase):
    def test_pip_install_into_a_venv_and_import(self) -> None:
        if not Path(PYTHON).exists():
            self.skipTest(f"{PYTHON} not found (set AXON_SYSTEM_PYTHON)")
        with tempfile.TemporaryDirectory(prefix="axpy-venv-") as tmp:
            venv = Path(tmp, "venv")
            subprocess.run([PYTHON, "-m", "venv", "--system-site-packages", str(venv)], check=True)
            py = str(venv / "bin" / "python")
            sources = []
            for rel in ("client/python", "sdk/python"):
                dst = Path(tmp, rel.replace("/", "-"))
                shutil.copytree(ROOT / rel, dst, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
                sources.append(str(dst))
            done = subprocess.run(
                [py, "-m", "pip", "install", "--no-build-isolation", "--no-index", "--no-deps", *sources],
                capture_output=True,
                text=True,
            )
            self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
            probe = (
                "import axon_client, axon_worker, sys\n"
                "print(axon_client.__file__); print(axon_worker.__file__); print(axon_worker.library_path)\n"
                "c = axon_client.Client('127.0.0.1', 9, tenant=1); c.close()\n"
            )
            env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
            ran = subprocess.run([py, "-c", probe], capture_output=True, text=True, cwd=tmp, env=env)
            self.assertEqual(ran.returncode, 0, ran.stdout + ran.stderr)
            client_file, worker_file, lib = ran.stdout.split("\n")[:3]
            self.assertTrue(client_file.startswith(str(venv)), client_file)
            self.assertTrue(worker_file.startswith(str(venv)), worker_file)
            if os.environ.get("AXON_WORKER_LIB"):
                self.assertEqual(lib, os.environ["AXON_WORKER_LIB"])
            # The installed axon_client is typed (PEP 561).
            self.assertTrue(Path(client_file).with_name("py.typed").exists())


if __name__ == "__main__":
    unittest.main()
