"""KUnit progress while the boot's KTAP streams in: the count moves per result, the suite is named."""

from __future__ import annotations

from pathlib import Path

from nixvmd.suite.kunit import kunit_suite

DATA = Path(__file__).parent / "data"


def test_each_result_line_moves_the_count_and_the_running_suite_is_named(tmp_path: Path) -> None:
    suite = kunit_suite()
    seen: list[tuple[str | None, int]] = []
    for line in (DATA / "kunit_6_1_console.log").read_text().splitlines():
        suite.console_line(line)
        progress = suite.progress()
        seen.append((progress.test, progress.done))
        assert progress.total is None  # KUnit announces suites, not the number of cases

    counts = [done for _, done in seen]
    assert counts == sorted(counts)
    assert len(set(counts)) - 1 == len(suite.results(0, tmp_path, complete=True)), "one step per test"
    # While example's 7 cases report, example (or its parameterised case) is what runs.
    during_example = {test for test, done in seen if 0 < done < 7}
    assert during_example == {"example", "example.example_params_test"}
    assert {test for test, done in seen if 7 < done < 9} == {"list-kunit-test"}
    assert seen[-1][0] is None, "nothing runs once the last suite reported"
