"""secure-export: the Pulumi program. Reads and validates the stack config, declares one SecureExport.

Run it with `pulumi up --stack <name>` (config in stacks/Pulumi.<name>.yaml), or offline with
`secure-export plan --stack <name>`, which runs this same file under Pulumi's mocks.
"""

import pulumi

from secure_export.stack.config import ConfigError
from secure_export.stack.loading import load_pulumi_config
from secure_export.stack.program import declare

try:
    config = load_pulumi_config()
except ConfigError as exc:
    for problem in exc.problems:
        pulumi.log.error(problem)
    # RunError ends the program with its message and without a traceback.
    raise pulumi.RunError(f"invalid stack configuration ({len(exc.problems)} problem(s) above)") from None

for warning in config.warnings:
    pulumi.log.warn(warning)
declare(config)
