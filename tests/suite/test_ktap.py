"""KTAP parser: KUnit 6.1 console logs, the spec's nesting, directives, truncation, garbage."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from nixvmd.results.record import TestResult, TestStatus
from nixvmd.suite.ktap import KtapParser, KtapRun, parse_ktap
from nixvmd.suite.ktap_headline import MAX_DIAG_LINES

DATA = Path(__file__).parent / "data"
PASS, FAIL, SKIP, ERROR = TestStatus.PASS, TestStatus.FAIL, TestStatus.SKIP, TestStatus.ERROR


def read(name: str) -> str:
    return (DATA / name).read_text()


def statuses(run: KtapRun) -> dict[str, TestStatus]:
    return {t.name: t.status for t in run.tests}


def by_name(run: KtapRun, name: str) -> TestResult:
    return next(t for t in run.tests if t.name == name)


def test_kunit_6_1_console_reports_leaf_cases_under_their_suite() -> None:
    run = parse_ktap(read("kunit_6_1_console.log"))

    assert statuses(run) == {
        "example.example_simple_test": PASS,
        "example.example_skip_test": SKIP,
        "example.example_fail": FAIL,
        "example.example_params_test.example value 3": PASS,
        "example.example_params_test.example value 2": PASS,
        "example.example_params_test.example value 1": PASS,
        "example.example_params_test.example value 0": SKIP,
        "list-kunit-test.list_test_list_init": PASS,
        "list-kunit-test.list_test_list_add": PASS,
        "sysctl_test.sysctl_test_api_dointvec_null_tbl_data": PASS,
    }
    assert run.complete


def test_kunit_failure_message_is_the_expectation_diagnostics() -> None:
    run = parse_ktap(read("kunit_6_1_console.log"))

    message = by_name(run, "example.example_fail").message
    assert message.splitlines() == [
        "EXPECTATION FAILED at lib/kunit/kunit-example-test.c:52: Expected 1 + 1 == 3, but 1 + 1 == 2 (0x2)",
        "example_fail: EXPECTATION FAILED at lib/kunit/kunit-example-test.c:52",
        "Expected 1 + 1 == 3, but",
        "    1 + 1 == 2 (0x2)",
    ]
    assert by_name(run, "example.example_skip_test").message == "this test should be skipped"


def test_kunit_totals_agree_with_parsed_counts() -> None:
    run = parse_ktap(read("kunit_6_1_console.log"))

    (totals,) = run.totals
    assert (totals.passed, totals.failed, totals.skipped, totals.total) == (7, 1, 2, 10)
    assert run.count(PASS) == totals.passed
    assert run.count(FAIL) == totals.failed
    assert run.count(SKIP) == totals.skipped
    assert len(run.tests) == totals.total


def test_interleaved_kernel_messages_are_not_part_of_any_test() -> None:
    run = parse_ktap(read("kunit_6_1_console.log"))

    assert all("crng" not in t.message and "ACPI" not in t.message for t in run.tests)


def test_printk_timestamps_give_durations() -> None:
    run = parse_ktap(read("kunit_6_1_console.log"))

    # From the suite's plan line (0.512402; the first case runs after it, not after its version
    # line at 0.512400) to the case's result (0.512500), then from result to result.
    assert by_name(run, "example.example_simple_test").duration_s == 0.000098
    assert by_name(run, "example.example_skip_test").duration_s == 0.0001
    # A parameterised case's first value starts after its `# Subtest:` line (0.512811).
    assert by_name(run, "example.example_params_test.example value 3").duration_s == 0.000009


def test_subtest_header_may_come_before_the_version_line() -> None:
    run = parse_ktap(read("kunit_subtest_first.log"))

    assert statuses(run) == {"kasan.kmalloc_oob_right": PASS, "kasan.kmalloc_oob_left": PASS}
    assert run.complete


def test_spec_nesting_with_two_spaces_names_levels_by_their_result_lines() -> None:
    run = parse_ktap(read("ktap_spec_nested.ktap"))

    assert statuses(run) == {
        "main_test.example_test_1.test_1": PASS,
        "main_test.example_test_2.test_1": SKIP,
        "main_test.example_test_2.test_2": PASS,
        "main_test.example_test_3.test_1": PASS,
        "main_test.example_test_3.test_2": FAIL,
        "main_test.example_test_3.test_3": SKIP,
    }
    assert by_name(run, "main_test.example_test_3.test_2").message == "FAIL\ntest_2: FAIL"


def test_directives_map_to_statuses_and_messages() -> None:
    run = parse_ktap(read("kselftest_directives.tap"))

    results = {t.name: (t.status, t.message) for t in run.tests}
    assert results == {
        "plain pass": (PASS, ""),
        "plain failure": (FAIL, "got 3, want 4\nplain failure: got 3, want 4"),
        "skipped case": (SKIP, "needs CONFIG_FOO"),
        "expected failure": (PASS, "expected failure: known bug in old firmware"),
        "known broken": (SKIP, "TODO: not implemented yet"),
        "slow case": (ERROR, "timed out: 45 seconds"),
        "harness case": (ERROR, "could not fork"),
        "dashed name": (PASS, "rcode=0"),
    }
    assert run.totals[0].get("xfail") == 1


def test_kunit_4_space_indent_and_spec_2_space_indent_give_the_same_tests() -> None:
    two = "KTAP version 1\n1..1\n  KTAP version 1\n  1..2\n  ok 1 a\n  not ok 2 b\nnot ok 1 s\n"
    four = two.replace("  ", "    ")

    assert statuses(parse_ktap(two)) == statuses(parse_ktap(four)) == {"s.a": PASS, "s.b": FAIL}


def test_crash_inside_a_suite_reports_the_running_case_and_each_one_not_reached() -> None:
    run = parse_ktap(read("kunit_crash.log"))

    assert statuses(run) == {
        "ext4_inode_test.inode_test_xtimestamp_decoding": PASS,
        "ext4_inode_test.inode_test_xtimestamp_encoding": PASS,
        "ext4_inode_test.#3": ERROR,
        "#2": ERROR,
    }
    message = by_name(run, "ext4_inode_test.#3").message
    assert message.startswith("did not finish: the output ended")
    assert "2 of the 3 subtests reported" in message
    assert by_name(run, "#2").message.startswith("did not run: the output ended")
    assert not run.complete


def test_crash_between_top_level_tests_reports_each_one_not_reached() -> None:
    run = parse_ktap("TAP version 13\n1..3\nok 1 first\n")

    assert statuses(run) == {"first": PASS, "#2": ERROR, "#3": ERROR}
    assert "1 of the 3 tests reported" in by_name(run, "#2").message
    assert by_name(run, "#3").message.startswith("did not run")


def test_a_suite_that_crashed_after_its_last_case_is_reported_itself() -> None:
    run = parse_ktap("KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: s\n    1..1\n    ok 1 a\n")

    assert statuses(run) == {"s.a": PASS, "s": ERROR}
    assert "1 of the 1 subtests reported" in by_name(run, "s").message


def test_a_new_document_before_the_last_ended_means_the_unfinished_test_crashed() -> None:
    rebooted = (
        "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: s\n    1..2\n    ok 1 a\n"
        "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: s\n    1..2\n"
        "    ok 1 a\n    ok 2 b\nok 1 s\n"
    )
    run = parse_ktap(rebooted)

    assert [(t.name, t.status) for t in run.tests] == [
        ("s.a", PASS),
        ("s.#2", ERROR),
        ("s.a", PASS),
        ("s.b", PASS),
    ]
    assert "new KTAP document" in run.tests[1].message


def test_later_documents_such_as_modules_loaded_after_boot_are_parsed_too() -> None:
    module = "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: m\n    1..1\n    ok 1 c\nok 1 m\n"
    run = parse_ktap(read("kunit_6_1_console.log") + module)

    assert run.tests[-1].name == "m.c"
    assert run.complete


def test_a_suite_that_fails_without_a_failing_case_is_reported_itself() -> None:
    run = parse_ktap(
        "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: s\n    1..1\n"
        "    ok 1 a\n# s: suite_exit failed\nnot ok 1 s\n"
    )

    assert statuses(run) == {"s.a": PASS, "s": FAIL}
    assert by_name(run, "s").message == "suite_exit failed\ns: suite_exit failed"


def test_a_suite_without_cases_is_reported_itself() -> None:
    run = parse_ktap(
        "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: empty\n   "
        " 1..0\nok 1 empty # SKIP no cases\n"
    )

    assert statuses(run) == {"empty": SKIP}


def test_each_case_a_suite_planned_but_never_reported_is_an_error_of_its_own() -> None:
    run = parse_ktap("KTAP version 1\n1..1\n  KTAP version 1\n  # Subtest: s\n  1..3\n  ok 1 a\nok 1 s\n")

    assert statuses(run) == {"s.a": PASS, "s.#2": ERROR, "s.#3": ERROR}
    assert by_name(run, "s.#2").message == "never reported: s planned 3 subtests and reported 1"
    assert run.complete


def test_printk_caller_ids_and_log_levels_are_stripped() -> None:
    run = parse_ktap(
        "<6>[    1.000000][    T1] KTAP version 1\n<6>[    1.000001][    T1] 1..1\n[    1.1][    T1] ok 1 t\n"
    )

    assert statuses(run) == {"t": PASS}


def test_feed_reports_each_test_when_its_result_line_arrives() -> None:
    parser = KtapParser()
    finished_at: dict[str, int] = {}
    currents = []
    for number, line in enumerate(read("kunit_6_1_console.log").splitlines(), start=1):
        for test in parser.feed(line):
            finished_at[test.name] = number
        currents.append(parser.current)

    assert finished_at["example.example_fail"] == 16
    assert finished_at["sysctl_test.sysctl_test_api_dointvec_null_tbl_data"] == 38
    assert "example" in currents
    assert "example.example_params_test" in currents
    assert currents[-1] is None


def test_diagnostics_kept_per_test_are_bounded() -> None:
    noise = "".join(f"    # line {i}\n" for i in range(10_000))
    run = parse_ktap(
        f"KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: s\n    "
        f"1..1\n{noise}    not ok 1 t\nnot ok 1 s\n"
    )

    assert by_name(run, "s.t").message.splitlines() == [
        "line 9999",
        *(f"line {i}" for i in range(10_000 - MAX_DIAG_LINES, 10_000)),
    ]


def test_text_without_ktap_gives_an_empty_incomplete_run() -> None:
    run = parse_ktap("[    0.000000] Linux version 6.1.0\nok this is not a result\n1..3 neither\n")

    assert run == KtapRun(tests=(), totals=(), complete=False, started=False)


def test_finish_twice_gives_the_same_run_and_feed_after_finish_is_ignored() -> None:
    parser = KtapParser()
    parser.feed("KTAP version 1")
    parser.feed("ok 1 a")
    first = parser.finish()

    assert parser.feed("ok 2 b") == ()
    assert parser.finish() == first


LOGS = [
    "kunit_6_1_console.log",
    "ktap_spec_nested.ktap",
    "kselftest_directives.tap",
    "kunit_subtest_first.log",
]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(LOGS), st.data())
def test_truncation_keeps_finished_tests_and_their_statuses(name: str, data: st.DataObject) -> None:
    lines = read(name).splitlines()
    cut = data.draw(st.integers(0, len(lines)))
    full, prefix = KtapParser(), KtapParser()
    full_finished = [t for line in lines for t in full.feed(line)]
    finished = [t for line in lines[:cut] for t in prefix.feed(line)]
    run = prefix.finish()

    assert finished == full_finished[: len(finished)]
    assert list(run.tests[: len(finished)]) == finished


NOISE = st.text(st.characters(codec="utf-8", exclude_characters="\n\r\t #"), min_size=1, max_size=40).filter(
    lambda s: not s.lstrip().startswith(("ok", "not ok", "1..", "KTAP", "TAP", "[")) and not s[0].isspace()
)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(LOGS), st.lists(st.tuples(st.integers(0, 200), NOISE), max_size=20))
def test_unrelated_kernel_messages_anywhere_change_nothing(name: str, noise: list[tuple[int, str]]) -> None:
    lines = read(name).splitlines()
    noisy = list(lines)
    for position, text in sorted(noise, reverse=True):
        noisy.insert(min(position, len(noisy)), text)

    assert parse_ktap("\n".join(noisy)) == parse_ktap("\n".join(lines))


KTAPISH = st.sampled_from(
    [
        "KTAP version 1",
        "TAP version 13",
        "1..2",
        "1..0",
        "ok 1 a",
        "not ok 2 b # SKIP",
        "ok",
        "not ok 3",
        "# Subtest: x",
        "# Totals: pass:1",
        "#",
        "ok 1 a # TODO",
        "ok 99999999999999999999 x",
        "[ 1.0] ok 1 t",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.one_of(KTAPISH, st.text(max_size=30))), max_size=60))
def test_garbage_never_raises(lines: list[tuple[int, str]]) -> None:
    parser = KtapParser()
    for indent, text in lines:
        parser.feed(" " * indent + text)
    run = parser.finish()

    assert all(isinstance(t, TestResult) for t in run.tests)


def _per_suite(run: KtapRun) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for test in run.tests:
        suite = counts.setdefault(test.name.split(".")[0], {})
        suite[test.status.value] = suite.get(test.status.value, 0) + 1
    return counts


def test_each_missing_subtest_counts_once_as_an_error_in_its_suite() -> None:
    run = parse_ktap(read("kunit_missing_subtests.log"))

    # What tools/testing/kunit/kunit.py counts for this log (test_ktap_kunit_py.py runs
    # the real one): each subtest a plan announced but the output never gave is one
    # crashed test ("missing expected subtest!"), whether the parent's result line came
    # (bravo) or the output ended (delta, and the fifth suite of the top-level plan).
    # Its "crashed" is nixvmd's error.
    kunit_py = {
        "alpha": {"pass": 3},
        "bravo": {"pass": 1, "fail": 1, "error": 2},
        "charlie": {"pass": 4},
        "delta": {"skip": 1, "error": 2},
        "#5": {"error": 1},
    }
    assert _per_suite(run) == kunit_py
    assert [t.name for t in run.tests if t.status is ERROR] == [
        "bravo.#3",
        "bravo.#4",
        "delta.#2",
        "delta.#3",
        "#5",
    ]
    assert by_name(run, "delta.#2").message.startswith("did not finish: the output ended")
    assert by_name(run, "delta.#3").message.startswith("did not run")
    assert by_name(run, "bravo.#3").message == "never reported: bravo planned 4 subtests and reported 2"


def test_missing_subtests_count_as_progress_when_their_parent_ends() -> None:
    parser = KtapParser()
    lines = ["KTAP version 1", "1..1", "  KTAP version 1", "  # Subtest: s", "  1..3", "  ok 1 a", "ok 1 s"]
    finished = [len(parser.feed(line)) for line in lines]

    assert finished == [0, 0, 0, 0, 0, 1, 2]


FAILING = "kunit_6_1_failing_console.log"
"""A real console, byte for byte: the kunit-tiny kernel (Debian's linux-source 6.1.192,
tinyconfig + KUnit) with lib/kunit/kunit-example-test.c changed as
kunit_failing_example.patch shows, booted with `qemu-system-x86_64 -kernel ... -append
console=ttyS0`. Its reports come from lib/kunit/assert.c as that kernel prints them."""

KERNEL_HEADLINES = {
    "example.example_simple_test": (
        "EXPECTATION FAILED at lib/kunit/kunit-example-test.c:29: Expected 1 + 1 == 3, but 1 + 1 == 2"
    ),
    "example.example_all_expect_macros_test": (
        "EXPECTATION FAILED at lib/kunit/kunit-example-test.c:129: "
        'Expected "hi" == kunit_kstrdup_or(test), but kunit_kstrdup_or(test) == "bye" (+1 more)'
    ),
    "example.example_fail_test": (
        "EXPECTATION FAILED at lib/kunit/kunit-example-test.c:136: You should not see this line."
    ),
    "example.example_unary_msg_test": (
        "EXPECTATION FAILED at lib/kunit/kunit-example-test.c:141: "
        "Expected 1 == 2 to be true, but is false: one is 1 (+1 more)"
    ),
}


def test_kunit_headline_is_the_failed_expectation_as_the_kernel_printed_it() -> None:
    run = parse_ktap(read(FAILING))

    assert {t.name: t.message.splitlines()[0] for t in run.tests if t.status is FAIL} == KERNEL_HEADLINES
    assert {t.name: t.headline for t in run.tests if t.status is FAIL} == KERNEL_HEADLINES
    example = next(totals for totals in run.totals if totals.total == 6)
    assert (example.failed, example.skipped) == (4, 2)


def test_kunit_message_keeps_every_report_below_the_headline() -> None:
    run = parse_ktap(read(FAILING))

    assert by_name(run, "example.example_all_expect_macros_test").message.splitlines()[1:] == [
        "example_all_expect_macros_test: initializing",
        "example_all_expect_macros_test: EXPECTATION FAILED at lib/kunit/kunit-example-test.c:129",
        'Expected "hi" == kunit_kstrdup_or(test), but',
        '    kunit_kstrdup_or(test) == "bye"',
        "example_all_expect_macros_test: ASSERTION FAILED at lib/kunit/kunit-example-test.c:130",
        "Expected sizeof(int) > 8, but",
        "    sizeof(int) == 4",
        "Your ints are 32-bit?!",
    ]


def test_kunit_headlines_are_the_same_with_printk_times() -> None:
    timed = "".join(f"[{n / 1000:12.6f}] {line}\n" for n, line in enumerate(read(FAILING).splitlines()))

    run = parse_ktap(timed)

    assert {t.name: t.headline for t in run.tests if t.status is FAIL} == KERNEL_HEADLINES


def test_kernel_lines_around_a_report_are_not_part_of_its_headline() -> None:
    lines = read(FAILING).splitlines()
    noisy = []
    for line in lines:
        if line.lstrip().startswith(("not ok", "# example_")):
            noisy.append("random: crng init done")  # another printk record, between KUnit's own
        noisy.append(line)

    run = parse_ktap("\n".join(noisy))

    assert {t.name: t.headline for t in run.tests if t.status is FAIL} == KERNEL_HEADLINES
    assert all("crng" not in t.message for t in run.tests)


def test_tests_belong_to_their_kunit_suite_and_top_level_tests_to_none() -> None:
    kunit = parse_ktap(read(FAILING))
    tap = parse_ktap(read("kselftest_directives.tap"))

    assert by_name(kunit, "example.example_simple_test").collection == "example"
    assert by_name(kunit, "example.example_simple_test").short_name == "example_simple_test"
    assert {t.collection for t in kunit.tests if t.name.startswith("string-stream-test.")} == {
        "string-stream-test"
    }
    assert {t.collection for t in tap.tests} == {""}


def test_a_failure_without_a_kunit_report_is_headed_by_its_reason_or_last_diagnostic() -> None:
    run = parse_ktap(read("kselftest_directives.tap"))

    assert by_name(run, "plain failure").headline == "got 3, want 4"
    assert by_name(run, "slow case").headline == "timed out: 45 seconds"


def test_a_suite_named_two_ways_one_character_apart_is_reported_as_suspect() -> None:
    # The `# Subtest:` line and the suite's result line name it twice; a garbled copy
    # is noted, and the tests keep the `# Subtest:` name (no new suite appears).
    run = parse_ktap(
        "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: kunit-resource-test\n    1..1\n"
        "    ok 1 alloc\nok 1 kunit-resurce-test\n"
    )

    assert [t.name for t in run.tests] == ["kunit-resource-test.alloc"]
    (suspect,) = run.suspects
    assert (suspect.seen, suspect.kept) == ("kunit-resurce-test", "kunit-resource-test")
    assert "a dropped 'o'" in suspect.note


def test_a_suite_whose_result_line_names_it_differently_is_no_suspect() -> None:
    run = parse_ktap(
        "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: alpha\n    1..1\n    ok 1 a\nok 1 beta\n"
    )

    assert [t.name for t in run.tests] == ["alpha.a"]
    assert run.suspects == ()
