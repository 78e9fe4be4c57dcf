"""secure_export/contract.py: the shared values, written once, importable without any third-party package."""

import json
import re
import subprocess
import sys

from secure_export import contract
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT


def test_the_contract_imports_nothing_but_the_standard_library():
    # The receiver's image and any consumer may import it; it must not pull pydantic, Pulumi or YAML in.
    script = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        "import secure_export.contract\n"
        "print(json.dumps(sorted(m for m in set(sys.modules) - before if not m.startswith(('secure_export', '_')))))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    loaded = json.loads(done.stdout)
    assert not [m for m in loaded if m.split(".")[0] not in sys.stdlib_module_names], loaded


def test_the_values_are_azures_and_the_design_contracts():
    # Azure Monitor's "Configure secure webhook" documents the client id and the role name.
    assert contract.AZNS_AAD_WEBHOOK_CLIENT_ID == "461e8683-5575-4561-ac7f-899cc907d62a"
    assert contract.SECURE_WEBHOOK_ROLE == "ActionGroupsSecureWebhook"
    assert contract.SEVERITIES == ("Sev0", "Sev1", "Sev2", "Sev3", "Sev4")
    assert contract.IMAGE_DB_PATH == "/data/secure-export.db"
    names = [getattr(contract, n) for n in dir(contract) if n.startswith("ENV_")]
    assert names and all(v.startswith(contract.VARIABLE_PREFIX) for v in names)
    assert all(re.fullmatch(r"SECURE_EXPORT_[A-Z_]+", v) for v in names)
    assert len(set(names)) == len(names)


def test_no_module_beside_the_contract_holds_a_copy_of_its_values():
    # The receiver's severity Literal is the one spelled-out copy: a type needs literal values
    # (the test below holds it to the contract).
    typed = ROOT / "receiver" / "alerts" / "schema.py"
    copies = [
        f"{path.relative_to(ROOT)}: {value}"
        for folder in ("components", "secure_export", "receiver")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path.name != "contract.py" and "secure_export/components" not in path.as_posix()
        for value in (contract.AZNS_AAD_WEBHOOK_CLIENT_ID, f'"{contract.SECURE_WEBHOOK_ROLE}"', '"Sev0", "Sev1"')
        if value in path.read_text(encoding="utf-8") and not (path == typed and value.startswith('"Sev'))
    ]
    assert copies == []


def test_the_receivers_severity_type_is_the_contracts_list():
    from typing import get_args

    from receiver.alerts.schema import Severity

    assert get_args(Severity) == contract.SEVERITIES
