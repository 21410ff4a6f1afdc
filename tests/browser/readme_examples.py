#!/usr/bin/env python3
"""The README shows the client developer's code from examples/ verbatim, between markers:

    <!-- include examples/service-worker.js -->
    ```js
    ...the file, exactly...
    ```
    <!-- end include -->

`readme_examples.py --write` fills every such block from its file; `--check` (and the browser
test) fails when a block differs from its file or a file of examples/ is not included, so the
guide is always the code the browser test runs. Every script in examples/ must be included."""

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
README = os.path.join(ROOT, "README.markdown")
EXAMPLES = os.path.join(ROOT, "examples")

BLOCK = re.compile(
    r"(?P<open><!-- include (?P<path>examples/[\w./-]+) -->\n)"
    r"```(?P<lang>\w*)\n(?P<body>.*?)```\n"
    r"(?P<close><!-- end include -->)",
    re.DOTALL,
)
LANGUAGES = {".js": "js", ".html": "html", ".json": "json"}


def example_files():
    """The code a client developer copies: every script in examples/ (demo.html, the page for
    trying it by hand, is served as it is rather than shown)."""
    return sorted(f"examples/{name}" for name in os.listdir(EXAMPLES) if name.endswith(".js"))


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def problems(readme_text):
    """What is wrong with the README's copies of examples/; empty when nothing is."""
    found = []
    included = set()
    for block in BLOCK.finditer(readme_text):
        path = block.group("path")
        included.add(path)
        if not os.path.isfile(os.path.join(ROOT, path)):
            found.append(f"README includes {path}, which does not exist")
        elif block.group("body") != read(path):
            found.append(f"README's copy of {path} differs from the file (run {sys.argv[0]} --write)")
    for path in example_files():
        if path not in included:
            found.append(f"README does not include {path} (add '<!-- include {path} -->' ... '<!-- end include -->')")
    return found


def filled(readme_text):
    def fill(block):
        path = block.group("path")
        language = block.group("lang") or LANGUAGES.get(os.path.splitext(path)[1], "")
        body = read(path)
        if not body.endswith("\n"):
            body += "\n"
        return f"{block.group('open')}```{language}\n{body}```\n{block.group('close')}"
    return BLOCK.sub(fill, readme_text)


def main(argv):
    if argv[1:] not in (["--check"], ["--write"]):
        print(f"usage: {argv[0]} --check | --write", file=sys.stderr)
        return 2
    with open(README, encoding="utf-8") as f:
        text = f.read()
    if argv[1] == "--write":
        new = filled(text)
        if new != text:
            with open(README, "w", encoding="utf-8") as f:
                f.write(new)
            print("README.markdown: examples filled in")
        text = new
    found = problems(text)
    for problem in found:
        print(problem, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
