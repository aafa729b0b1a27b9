"""A bisect's end on the desktop: the daemon tells a real notification server what it found.

The bounds are a commit and its child, so git names the first bad commit at once: no step
is built or run, and no VM boots; the daemon, git's bisect in nixvmd's own worktree, D-Bus
and dunst are all real.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.conftest import DaemonProcess
from tests.desktop import NotificationServer
from tests.git_trees import git, one_commit_tree

Start = Callable[[str], DaemonProcess]


def test_the_end_of_a_bisect_is_a_desktop_notification_naming_the_first_bad_commit(
    daemon_factory: Start,
    tmp_path: Path,
    short_tmp: Path,
    desktop_notifications: NotificationServer,
) -> None:
    tree = tmp_path / "linux"
    good = one_commit_tree(tree)
    (tree / "Makefile").write_text("VERSION = 7\n")
    git(tree, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-am", "break it")
    bad = git(tree, "rev-parse", "HEAD")
    daemon = daemon_factory(
        f'[kernel]\ntree = "{tree}"\n'
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\nsocket = "{short_tmp / "ctl.sock"}"\n'
    )
    events = daemon.events(["bisect"])

    daemon.call("bisect", action="start", good=good[:12], tests=["exit 1"])
    end = events.wait_for(lambda e: e["event"] == "bisect" and e["state"] != "running", 30)
    note = desktop_notifications.next(timeout_s=30)

    assert (end["state"], end["first_bad"], end["step"]) == ("found", bad, 0)
    assert note["summary"] == "bisect found"
    assert note["body"] == f"first bad commit {bad[:12]} break it"
    assert note["urgency"] == "NORMAL"
    assert git(tree, "rev-parse", "HEAD") == bad  # the developer's checkout is where it was
    events.close()
