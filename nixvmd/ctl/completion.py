"""Shell completion for nixvmctl: scripts generated from its argparse parser, and the words
(run ids, test names, baseline entries) they ask `nixvmctl __complete KIND` for.

An argument whose values come from the state dir is marked with `words(action, KIND)`; the
scripts call `nixvmctl __complete KIND`, which reads the state dir itself (no daemon needed,
and fast: no socket round trip) and prints one word per line.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from nixvmd.config.load import find_config_file, load_config
from nixvmd.config.schema import Config, SuiteKind
from nixvmd.errors import NixvmdError
from nixvmd.results.baseline import Baseline
from nixvmd.results.store import RunStore

# The hidden subcommand the scripts call.
COMPLETE = "__complete"
# What `__complete` can list: run ids, the latest run's test names, the baseline's entries.
KINDS = ("runs", "tests", "baseline")
# How many records `tests` reads at most, looking for the latest run that had tests.
TESTS_LOOKBACK = 20


@dataclass
class Command:
    """A (sub)command as completion sees it: its options, subcommands, and whether it takes files."""

    name: str
    help: str = ""
    # (flag, help, what follows it: "" nothing, "value" a value, "file" a path)
    options: list[tuple[str, str, str]] = field(default_factory=list)
    subcommands: list[Command] = field(default_factory=list)
    files: bool = False
    choices: list[str] = field(default_factory=list)  # of its positional argument
    choices_name: str = ""
    words: str = ""  # the KIND of `__complete` its positional argument takes
    many: bool = False  # that argument takes several words (nargs + or *)
    option_words: dict[str, str] = field(default_factory=dict)  # flag -> KIND, for flags taking a list


def complete_with(action: argparse.Action, kind: str) -> argparse.Action:
    """Mark `action` as completed with `nixvmctl __complete kind`."""
    assert kind in KINDS, kind
    action.complete_words = kind  # type: ignore[attr-defined]
    return action


def _words_of(action: argparse.Action) -> str:
    return str(getattr(action, "complete_words", ""))


def _is_path(action: argparse.Action) -> bool:
    return action.type is not None and getattr(action.type, "__name__", "") in ("Path", "PurePath")


def command_tree(parser: argparse.ArgumentParser, name: str = "", help: str = "") -> Command:
    """The parser's commands, options and subcommands, walked through argparse's actions."""
    command = Command(name or parser.prog, help)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for sub_name, sub_parser in action.choices.items():
                if sub_name.startswith("__"):
                    continue  # hidden (the completion helper itself)
                command.subcommands.append(command_tree(sub_parser, sub_name, helps.get(sub_name, "")))
        elif action.option_strings:
            for flag in action.option_strings:
                follows = "" if action.nargs == 0 else "file" if _is_path(action) else "value"
                command.options.append((flag, action.help or "", follows))
                if _words_of(action):
                    command.option_words[flag] = _words_of(action)
        elif _words_of(action):
            command.words = _words_of(action)
            command.many = action.nargs in ("+", "*")
        elif action.choices is not None:
            command.choices += [str(choice) for choice in action.choices]
            command.choices_name = action.dest
        elif _is_path(action):
            command.files = True
    return command


def _bash_case(command: Command, path: str) -> list[str]:
    offered = [flag for flag, _, _ in command.options] + [c.name for c in command.subcommands]
    offered += command.choices
    label = f'"{path or "_"}"'
    if command.many:  # `baseline remove a b <TAB>` still completes entries
        label += f'|"{path} "*'
    lines = [f"        {label})", f'            opts="{" ".join(offered)}"']
    if command.files:
        lines.append("            files=1")
    if command.words:
        lines.append(f"            dyn={command.words}")
    lines.append("            ;;")
    for sub in command.subcommands:
        lines += _bash_case(sub, f"{path} {sub.name}".strip())
    return lines


def bash_script(parser: argparse.ArgumentParser) -> str:
    """A bash completion script: `source <(nixvmctl completion bash)`.

    Run ids, test names and baseline entries come from `nixvmctl __complete KIND`, called
    with the same `--config` (and other leading options) as the line being completed.
    """
    tree = command_tree(parser)
    fn = "_" + tree.name.replace("-", "_")
    options = _all_options(tree)
    list_flags = {
        flag: kind for command in _all_commands(tree) for flag, kind in command.option_words.items()
    }
    value_flags = sorted({flag for flag, _, follows in options if follows} - set(list_flags))
    file_flags = sorted({flag for flag, _, follows in options if follows == "file"})
    list_cases = "".join(f"\n            {flag}) many={kind} ;;" for flag, kind in sorted(list_flags.items()))
    cases = "\n".join(_bash_case(tree, ""))
    return f"""# bash completion for {tree.name}, generated by `{tree.name} completion bash`
{fn}_words() {{
    # What `{tree.name} __complete $1` lists (one per line), those starting with $cur.
    local w
    while IFS= read -r w; do
        [[ -n $w && $w == "$cur"* ]] && COMPREPLY+=("$(printf '%q' "$w")")
    done < <("${{COMP_WORDS[0]}}" "${{leading[@]}}" {COMPLETE} "$1" 2>/dev/null)
}}
{fn}() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    local path="" opts="" files=0 dyn="" many="" i word
    local -a leading=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        case "$word" in{list_cases}
            {"|".join(value_flags) or "--"})
                ((i++))
                many=""
                # Options before the command (--config...) choose the state dir: pass them on.
                [[ -z $path ]] && leading+=("$word" "${{COMP_WORDS[i]/#\\~/$HOME}}") ;;
            -*) many="" ;;
            *) [[ -n $many ]] || path="${{path:+$path }}$word" ;;
        esac
    done
    COMPREPLY=()
    if [[ -n $many && $cur != -* ]]; then
        {fn}_words "$many"
        return
    fi
    case "$prev" in
        {"|".join(file_flags) or "--"})
            COMPREPLY=($(compgen -f -- "$cur"))
            return ;;
        {"|".join(value_flags) or "--"})
            return ;;
    esac
    case "${{path:-_}}" in
{cases}
        *) opts="" ;;
    esac
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    if [[ -n $dyn && $cur != -* ]]; then
        {fn}_words "$dyn"
    fi
    if [[ $files == 1 && $cur != -* ]]; then
        COMPREPLY+=($(compgen -f -- "$cur"))
    fi
}}
complete -F {fn} {tree.name}
"""


def _all_commands(command: Command) -> list[Command]:
    out = [command]
    for sub in command.subcommands:
        out += _all_commands(sub)
    return out


def _all_options(command: Command) -> list[tuple[str, str, str]]:
    out = list(command.options)
    for sub in command.subcommands:
        out += _all_options(sub)
    return out


def _zsh_quote(text: str) -> str:
    return text.replace("'", "'\\''").replace("[", "\\[").replace("]", "\\]").replace(":", "\\:")


def _zsh_function(command: Command, fn: str, root: str) -> list[str]:
    specs = []
    for flag, help, follows in command.options:
        value = {"": "", "value": ":value: ", "file": ":file:_files"}[follows]
        if flag in command.option_words:  # a list of words, up to the next option
            value = f":*-*:{command.option_words[flag]}:{root}_words {command.option_words[flag]}"
        specs.append(f"'{flag}[{_zsh_quote(help)}]{value}'")
    if command.choices:
        specs.append(f"'1:{command.choices_name}:({' '.join(command.choices)})'")
    elif command.words:
        position = "*" if command.many else "1"
        specs.append(f"'{position}:{command.words}:{root}_words {command.words}'")
    elif command.files:
        specs.append("'*:file:_files'")
    lines = [f"{fn}() {{"]
    if command.subcommands:
        described = " ".join(f"'{c.name}:{_zsh_quote(c.help)}'" for c in command.subcommands)
        lines += [
            "    local curcontext=$curcontext state line",
            "    local -a commands",
            f"    commands=({described})",
            f"    _arguments -C {' '.join(specs)} '1:command:->command' '*::argument:->argument'",
            "    case $state in",
            "        command) _describe command commands ;;",
            "        argument)",
            "            case $words[1] in",
        ]
        lines += [
            f"                {c.name}) {fn}_{c.name.replace('-', '_')} ;;" for c in command.subcommands
        ]
        lines += ["            esac ;;", "    esac", "}"]
    else:
        lines += [f"    _arguments {' '.join(specs)}" if specs else "    :", "}"]
    for sub in command.subcommands:
        lines += _zsh_function(sub, f"{fn}_{sub.name.replace('-', '_')}", root)
    return lines


def zsh_script(parser: argparse.ArgumentParser) -> str:
    """A zsh completion script: save it as _nixvmctl in a directory on $fpath."""
    tree = command_tree(parser)
    fn = "_" + tree.name.replace("-", "_")
    helper = [
        f"{fn}_words() {{",
        f"    # What `{tree.name} __complete KIND` lists, one per line. _arguments puts compadd's",
        "    # options before KIND (the last word): they are passed on.",
        "    local -a found",
        f'    found=(${{(f)"$({tree.name} {COMPLETE} ${{@[-1]}} 2>/dev/null)"}})',
        '    compadd "${@[1,-2]}" -a found',
        "}",
    ]
    body = "\n".join(helper + _zsh_function(tree, fn, fn))
    return f'#compdef {tree.name}\n# generated by `{tree.name} completion zsh`\n{body}\n{fn} "$@"\n'


def complete(kind: str, config_path: Path | None) -> int:
    """`nixvmctl __complete KIND`: the words, one per line; nothing at all when they cannot be
    read (a completion must never print an error into the user's command line)."""
    try:
        config = load_config(config_path or find_config_file())
        found = completion_words(kind, config)
    except (NixvmdError, OSError, ValueError, KeyError):
        return 0
    for word in found:
        print(word)
    return 0


def completion_words(kind: str, config: Config) -> list[str]:
    """Run ids (newest first), the latest run's test names, or the baseline's entries."""
    store = RunStore(config.daemon.state_dir)
    if kind == "runs":
        return list(reversed(store.ids()))
    if kind == "baseline":
        return [entry.test for entry in Baseline.load(config.baseline_path).entries]
    if kind == "tests":
        return _latest_tests(store, config.suite.kind)
    raise ValueError(f"nothing to complete called {kind!r} (known: {', '.join(KINDS)})")


def _latest_tests(store: RunStore, kind: SuiteKind | str) -> list[str]:
    """The test names of the latest whole run (not narrowed), as `nixvmctl run --tests` takes them."""
    for run_id in list(reversed(store.ids()))[:TESTS_LOOKBACK]:
        try:
            record = store.load(run_id)
        except KeyError:
            continue
        if not record.tests or record.narrowed_to or record.suite != str(kind):
            continue
        names = [t.name for t in record.tests]
        if kind is SuiteKind.XFSTESTS:
            # check takes generic/001; a run over several sections names it xfs_4k:generic/001.
            names = [name.rpartition(":")[2] for name in names]
        elif kind is SuiteKind.KUNIT:
            # KUnit takes one glob (kunit.filter_glob): a whole suite is `suite.*`.
            names = [f"{name.split('.')[0]}.*" for name in names] + names
        return list(dict.fromkeys(names))
    return []
