"""Entry point: ``python worker.py`` runs a production worker configured from the environment.

Same as ``ai-orchestrator worker``; see ``ai_orchestrator/worker.py``.
"""

import sys

from ai_orchestrator.cli import main

if __name__ == "__main__":
    sys.exit(main(["worker"]))
