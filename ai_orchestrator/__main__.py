"""``python -m ai_orchestrator`` is the ``ai-orchestrator`` command."""

import sys

from .cli import main

sys.exit(main())
