"""Everything on one machine: the embedded Temporal dev server (``devserver``) and
the ``run`` / ``dev`` stack around it (``session``).

Nothing is imported here, so a tool that only needs the dev server does not load
the worker.
"""
