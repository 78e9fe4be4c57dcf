"""Entry point of the secure-export component package: hosts the components for `pulumi package add`."""

import sys
from pathlib import Path

# Run as a script, this folder leads the import path, and its secure_export.py would shadow the
# installed secure_export package the components are imported from.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

from pulumi.provider.experimental import component_provider_host  # noqa: E402 - after the import path is fixed

from secure_export.components import COMPONENTS, PACKAGE_NAME  # noqa: E402 - after the import path is fixed

if __name__ == "__main__":
    component_provider_host(COMPONENTS, PACKAGE_NAME, version="0.1.0")
