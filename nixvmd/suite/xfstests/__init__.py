"""The `xfstests` suite (fstests' `check`), one idea per module.

`suite.py` the SuiteRun (local.config, check's arguments, progress, hang deadlines, the
results); `guest.sh` the guest side, carried in the job; `output.py` the streaming parser
of check's output on the console, `summary.py` its closing lines; `verdict.py` one test's
verdict as check and result.xml give it; `results.py` result.xml, check.time, artefacts
and the merge; `disk.py` the results disk read back after QEMU is gone; `select.py` check's
own test selection from the tree's group.list files; `shards.py` a run split into shards.
"""

from nixvmd.suite.xfstests.suite import XfstestsSuite

__all__ = ["XfstestsSuite"]
