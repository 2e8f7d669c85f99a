"""The mirror export (the definition in $MAILCHIMP_EXPORTS_DIR) in a process of its own, for
test_mirror_crash.py, which SIGKILLs it between or during the two upload phases.

`start` / `resume RUN_ID`: as export_child.py (a new run; carry on a run after its worker died)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from export_child import resume, start
from mailchimp_exports import build_export_dag
from mailchimp_provider.export.definition import load_definition

if __name__ == "__main__":
    source = Path(os.environ["MAILCHIMP_EXPORTS_DIR"]) / "mirror.yaml"
    dag = build_export_dag(load_definition(source), source)
    sys.exit(start(dag) if sys.argv[1] == "start" else resume(dag, sys.argv[2]))
