"""Generate docs/settings.md from Config: ``python -m channelserver.docgen [--check]``.

Every setting appears once, with its flag (``python -m channelserver`` and
``runchannelserver``), its ``settings.CHANNELSERVER`` key, default, unit and help.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import options

TARGET = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def render() -> str:
    lines = [
        "# Settings",
        "",
        "<!-- Generated from channelserver/config.py by `python -m channelserver.docgen`; do not edit. -->",
        "",
        "Each setting is defined once, in `channelserver/config.py`. It is a flag of",
        "`python -m channelserver` and of `manage.py runchannelserver` (same name), and a key of",
        "`settings.CHANNELSERVER`. Command-line flags override settings; settings override the",
        "defaults. An unknown key is an error that names it and the closest valid key.",
        "",
    ]
    group = None
    for opt in options():
        if opt.group != group:
            group = opt.group
            lines += [
                f"## {group.capitalize()}",
                "",
                "| flag | settings key | default | unit | meaning |",
                "|---|---|---|---|---|",
            ]
        flag = f"`{opt.flag}` / `--no-{opt.flag[2:]}`" if opt.is_bool else f"`{opt.flag}`"
        if opt.choices:
            flag += " (" + ", ".join(f"`{c}`" for c in opt.choices) + ")"
        default = f"`{opt.default_text}`" if opt.default_text else "(empty)"
        lines.append(f"| {flag} | `{opt.name}` | {default} | {opt.unit or ''} | {opt.help} |")
    # a blank line after each table
    out: list[str] = []
    prev_table = False
    for line in lines:
        is_table = line.startswith("|")
        if prev_table and not is_table:
            out.append("")
        if line.startswith("## ") and out and out[-1] != "":
            out.append("")
        out.append(line)
        prev_table = is_table
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if docs/settings.md is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not TARGET.exists() or TARGET.read_text() != text:
            print("docs/settings.md is out of date: run `make docs`", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
